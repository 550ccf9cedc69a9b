package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The fixture: the tools, resources and prompts that the MCP conformance
// suite's `server` scenarios call (@modelcontextprotocol/conformance 0.1.16,
// src/scenarios/server/*.ts; its reference fixture is
// examples/servers/typescript/everything-server.ts). Names, URIs and texts are
// the ones the scenarios check.

// Minimal media payloads (the ones the reference fixture uses): a 1×1 red PNG
// and a WAV file of silence.
const (
	fixturePNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
	fixtureWAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
)

func fixtureBytes(b64 string) []byte {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		panic(fmt.Sprintf("fixture media: %v", err))
	}
	return b
}

// fixtureAddTool registers one tool; it is the seam between the fixture and
// the server that serves it (resource.Server.AddTool in the conformance
// server, so that the tools go through mcpauth's policy layer).
type fixtureAddTool func(*mcp.Tool, mcp.ToolHandler)

// addFixture registers every tool through addTool and every resource and
// prompt on srv.
func addFixture(srv *mcp.Server, addTool fixtureAddTool) {
	addFixtureTools(addTool)
	addFixtureResources(srv)
	addFixturePrompts(srv)
}

// noArgs is the input schema of a tool without arguments.
var noArgs = json.RawMessage(`{"type":"object","properties":{}}`)

func textResult(text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}
}

// fixtureArgs decodes a tool's arguments into v; malformed arguments are a
// JSON-RPC invalid-params error (the raw handler API does not validate them
// against the input schema).
func fixtureArgs(req *mcp.CallToolRequest, v any) error {
	if len(req.Params.Arguments) == 0 {
		return nil
	}
	if err := json.Unmarshal(req.Params.Arguments, v); err != nil {
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "invalid arguments: " + err.Error()}
	}
	return nil
}

// fixturePause waits d or until ctx ends (the client went away).
func fixturePause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func addFixtureTools(add fixtureAddTool) {
	add(&mcp.Tool{Name: "test_simple_text", Description: "Returns a simple text response (conformance: tools-call-simple-text).", InputSchema: noArgs},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return textResult("This is a simple text response for testing."), nil
		})

	add(&mcp.Tool{Name: "test_image_content", Description: "Returns a PNG image (conformance: tools-call-image).", InputSchema: noArgs},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{
				&mcp.ImageContent{Data: fixtureBytes(fixturePNG), MIMEType: "image/png"},
			}}, nil
		})

	add(&mcp.Tool{Name: "test_audio_content", Description: "Returns a WAV audio clip (conformance: tools-call-audio).", InputSchema: noArgs},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{
				&mcp.AudioContent{Data: fixtureBytes(fixtureWAV), MIMEType: "audio/wav"},
			}}, nil
		})

	add(&mcp.Tool{Name: "test_embedded_resource", Description: "Returns an embedded text resource (conformance: tools-call-embedded-resource).", InputSchema: noArgs},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{
				&mcp.EmbeddedResource{Resource: &mcp.ResourceContents{
					URI:      "test://embedded-resource",
					MIMEType: "text/plain",
					Text:     "This is an embedded resource content.",
				}},
			}}, nil
		})

	add(&mcp.Tool{Name: "test_multiple_content_types", Description: "Returns text, an image and an embedded resource together (conformance: tools-call-mixed-content).", InputSchema: noArgs},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{
				&mcp.TextContent{Text: "Multiple content types test:"},
				&mcp.ImageContent{Data: fixtureBytes(fixturePNG), MIMEType: "image/png"},
				&mcp.EmbeddedResource{Resource: &mcp.ResourceContents{
					URI:      "test://mixed-content-resource",
					MIMEType: "application/json",
					Text:     `{"test":"data","value":123}`,
				}},
			}}, nil
		})

	add(&mcp.Tool{Name: "test_tool_with_logging", Description: "Sends three info log notifications while it runs (conformance: tools-call-with-logging).", InputSchema: noArgs},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			for i, msg := range []string{"Tool execution started", "Tool processing data", "Tool execution completed"} {
				if i > 0 {
					if err := fixturePause(ctx, 50*time.Millisecond); err != nil {
						return nil, err
					}
				}
				if err := req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Data: msg}); err != nil {
					return nil, err
				}
			}
			return textResult("Tool with logging executed successfully"), nil
		})

	add(&mcp.Tool{Name: "test_tool_with_progress", Description: "Reports progress 0, 50 and 100 of 100 on the request's progress token (conformance: tools-call-with-progress).", InputSchema: noArgs},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			token := req.Params.GetProgressToken()
			for i, p := range []float64{0, 50, 100} {
				if i > 0 {
					if err := fixturePause(ctx, 50*time.Millisecond); err != nil {
						return nil, err
					}
				}
				if token == nil {
					continue
				}
				if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
					ProgressToken: token, Progress: p, Total: 100,
				}); err != nil {
					return nil, err
				}
			}
			return textResult(fmt.Sprint(token)), nil
		})

	add(&mcp.Tool{Name: "test_error_handling", Description: "Always fails with a tool error (conformance: tools-call-error).", InputSchema: noArgs},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			res := textResult("This tool intentionally returns an error for testing")
			res.IsError = true
			return res, nil
		})

	add(&mcp.Tool{
		Name:        "test_sampling",
		Description: "Asks the client's LLM to complete a prompt (sampling/createMessage) and returns its answer (conformance: tools-call-sampling).",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"prompt":{"type":"string","description":"The prompt to send to the LLM"}},"required":["prompt"]}`),
	}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var in struct {
			Prompt string `json:"prompt"`
		}
		if err := fixtureArgs(req, &in); err != nil {
			return nil, err
		}
		res, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{
			Messages:  []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: in.Prompt}}},
			MaxTokens: 100,
		})
		if err != nil {
			return nil, fmt.Errorf("sampling: %w", err)
		}
		text := "(non-text response)"
		if tc, ok := res.Content.(*mcp.TextContent); ok {
			text = tc.Text
		}
		return textResult("LLM response: " + text), nil
	})

	add(&mcp.Tool{
		Name:        "test_elicitation",
		Description: "Asks the user for a username and an email (elicitation/create) and returns the answer (conformance: tools-call-elicitation).",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"message":{"type":"string","description":"The message to show the user"}},"required":["message"]}`),
	}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var in struct {
			Message string `json:"message"`
		}
		if err := fixtureArgs(req, &in); err != nil {
			return nil, err
		}
		return fixtureElicit(ctx, req, in.Message, map[string]any{
			"type": "object",
			"properties": map[string]any{
				"username": map[string]any{"type": "string", "description": "User's response"},
				"email":    map[string]any{"type": "string", "description": "User's email address"},
			},
			"required": []string{"username", "email"},
		})
	})

	add(&mcp.Tool{Name: "test_elicitation_sep1034_defaults", Description: "Elicits values whose schema carries defaults for every primitive type (conformance: elicitation-sep1034-defaults).", InputSchema: noArgs},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return fixtureElicit(ctx, req, "Please review and update the form fields with defaults", map[string]any{
				"type": "object",
				"properties": map[string]any{
					"name":     map[string]any{"type": "string", "description": "User name", "default": "John Doe"},
					"age":      map[string]any{"type": "integer", "description": "User age", "default": 30},
					"score":    map[string]any{"type": "number", "description": "User score", "default": 95.5},
					"status":   map[string]any{"type": "string", "description": "User status", "enum": []string{"active", "inactive", "pending"}, "default": "active"},
					"verified": map[string]any{"type": "boolean", "description": "Verification status", "default": true},
				},
			})
		})

	add(&mcp.Tool{Name: "test_elicitation_sep1330_enums", Description: "Elicits a choice with each enum schema form (conformance: elicitation-sep1330-enums).", InputSchema: noArgs},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			titled := []map[string]any{
				{"const": "value1", "title": "First Option"},
				{"const": "value2", "title": "Second Option"},
				{"const": "value3", "title": "Third Option"},
			}
			return fixtureElicit(ctx, req, "Please select options from the enum fields", map[string]any{
				"type": "object",
				"properties": map[string]any{
					"untitledSingle": map[string]any{"type": "string", "description": "Select one option", "enum": []string{"option1", "option2", "option3"}},
					"titledSingle":   map[string]any{"type": "string", "description": "Select one option with titles", "oneOf": titled},
					"legacyEnum":     map[string]any{"type": "string", "description": "Select one option (legacy)", "enum": []string{"opt1", "opt2", "opt3"}, "enumNames": []string{"Option One", "Option Two", "Option Three"}},
					"untitledMulti":  map[string]any{"type": "array", "description": "Select multiple options", "minItems": 1, "maxItems": 3, "items": map[string]any{"type": "string", "enum": []string{"option1", "option2", "option3"}}},
					"titledMulti":    map[string]any{"type": "array", "description": "Select multiple options with titles", "minItems": 1, "maxItems": 3, "items": map[string]any{"anyOf": titled}},
				},
			})
		})

	// json-schema-2020-12 (a pending scenario): the schema must reach
	// tools/list unchanged.
	add(&mcp.Tool{
		Name:        "json_schema_2020_12_tool",
		Description: "Has an input schema written in JSON Schema 2020-12 (conformance: json-schema-2020-12).",
		InputSchema: json.RawMessage(`{
			"$schema": "https://json-schema.org/draft/2020-12/schema",
			"type": "object",
			"$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
			"properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
			"additionalProperties": false
		}`),
	}, func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return textResult("JSON Schema 2020-12 tool called with: " + string(req.Params.Arguments)), nil
	})
}

// fixtureElicit sends elicitation/create with the schema and reports the
// user's answer.
func fixtureElicit(ctx context.Context, req *mcp.CallToolRequest, message string, schema map[string]any) (*mcp.CallToolResult, error) {
	res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: message, RequestedSchema: schema})
	if err != nil {
		return nil, fmt.Errorf("elicitation: %w", err)
	}
	content, err := json.Marshal(res.Content)
	if err != nil {
		return nil, err
	}
	return textResult(fmt.Sprintf("Elicitation completed: action=%s, content=%s", res.Action, content)), nil
}

const fixtureWatchedURI = "test://watched-resource"

func addFixtureResources(srv *mcp.Server) {
	srv.AddResource(&mcp.Resource{
		URI: "test://static-text", Name: "Static Text Resource", MIMEType: "text/plain",
		Description: "A static text resource for testing",
	}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{
			URI: req.Params.URI, MIMEType: "text/plain", Text: "This is the content of the static text resource.",
		}}}, nil
	})

	srv.AddResource(&mcp.Resource{
		URI: "test://static-binary", Name: "Static Binary Resource", MIMEType: "image/png",
		Description: "A static binary resource (image) for testing",
	}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{
			URI: req.Params.URI, MIMEType: "image/png", Blob: fixtureBytes(fixturePNG),
		}}}, nil
	})

	srv.AddResourceTemplate(&mcp.ResourceTemplate{
		URITemplate: "test://template/{id}/data", Name: "Resource Template", MIMEType: "application/json",
		Description: "A resource template with parameter substitution",
	}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		m := fixtureTemplateURI.FindStringSubmatch(req.Params.URI)
		if m == nil {
			return nil, mcp.ResourceNotFoundError(req.Params.URI)
		}
		body, err := json.Marshal(map[string]any{"id": m[1], "templateTest": true, "data": "Data for ID: " + m[1]})
		if err != nil {
			return nil, err
		}
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{
			URI: req.Params.URI, MIMEType: "application/json", Text: string(body),
		}}}, nil
	})

	srv.AddResource(&mcp.Resource{
		URI: fixtureWatchedURI, Name: "Watched Resource", MIMEType: "text/plain",
		Description: "A resource that can be subscribed to",
	}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{
			URI: req.Params.URI, MIMEType: "text/plain", Text: "Watched resource content",
		}}}, nil
	})
}

// fixtureTemplateURI matches test://template/{id}/data (RFC 6570 level 1: the
// id is one path segment).
var fixtureTemplateURI = regexp.MustCompile(`^test://template/([^/?#]+)/data$`)

func addFixturePrompts(srv *mcp.Server) {
	srv.AddPrompt(&mcp.Prompt{Name: "test_simple_prompt", Description: "A simple prompt without arguments"},
		func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{
				{Role: "user", Content: &mcp.TextContent{Text: "This is a simple prompt for testing."}},
			}}, nil
		})

	srv.AddPrompt(&mcp.Prompt{
		Name: "test_prompt_with_arguments", Description: "A prompt with required arguments",
		Arguments: []*mcp.PromptArgument{
			{Name: "arg1", Description: "First test argument", Required: true},
			{Name: "arg2", Description: "Second test argument", Required: true},
		},
	}, func(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		a := req.Params.Arguments
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{
			{Role: "user", Content: &mcp.TextContent{Text: fmt.Sprintf("Prompt with arguments: arg1='%s', arg2='%s'", a["arg1"], a["arg2"])}},
		}}, nil
	})

	srv.AddPrompt(&mcp.Prompt{
		Name: "test_prompt_with_embedded_resource", Description: "A prompt that includes an embedded resource",
		Arguments: []*mcp.PromptArgument{
			{Name: "resourceUri", Description: "URI of the resource to embed", Required: true},
		},
	}, func(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{
			{Role: "user", Content: &mcp.EmbeddedResource{Resource: &mcp.ResourceContents{
				URI: req.Params.Arguments["resourceUri"], MIMEType: "text/plain", Text: "Embedded resource content for testing.",
			}}},
			{Role: "user", Content: &mcp.TextContent{Text: "Please process the embedded resource above."}},
		}}, nil
	})

	srv.AddPrompt(&mcp.Prompt{Name: "test_prompt_with_image", Description: "A prompt that includes image content"},
		func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{
				{Role: "user", Content: &mcp.ImageContent{Data: fixtureBytes(fixturePNG), MIMEType: "image/png"}},
				{Role: "user", Content: &mcp.TextContent{Text: "Please analyze the image above."}},
			}}, nil
		})
}
