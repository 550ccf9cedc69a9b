package resource

import (
	"bytes"
	encjson "encoding/json"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/segmentio/encoding/json"
)

// A scope check must see exactly the tools the go-sdk will call, or a
// request could smuggle a call past it (peer-lessons DR-12: a batch, a
// duplicated key, an escaped method name, trailing data). So inspect decodes
// the body the way the go-sdk v1.8.0 does, with the same decoder
// (segmentio/encoding/json, case-sensitive field matching, the first JSON
// value wins and trailing bytes are ignored, nesting capped at 1000):
//
//   - mcp/transport.go readBatch: an array of raw messages if the body is
//     one, else one message; each as jsonrpc.DecodeMessage decodes it;
//   - mcp/streamable.go servePOST: any undecodable message fails the whole
//     POST (nothing is called);
//   - mcp/shared.go newMethodInfo: tools/call params decoded into
//     mcp.CallToolParamsRaw; undecodable or null params are not a call.
//
// FuzzInspect holds this agreement against the go-sdk's own handler, and the
// receiving middleware checks every call again after the go-sdk's decoding,
// so a disagreement can turn a 403 into a JSON-RPC error but never let a
// forbidden call run.

// parseFlags are the go-sdk's decoding flags (internal/json.NewDecoder).
const parseFlags = json.DontMatchCaseInsensitiveStructFields

// maxDepth is the go-sdk's nesting cap (internal/json.defaultMaxDepth).
const maxDepth = 1000

var toolsCall = []byte("tools/call")

// peek is what inspect learns from a request body.
type peek struct {
	tools []string   // the tool of every tools/call request, in order (repeats kept)
	batch bool       // the body is a JSON-RPC batch
	id    jsonrpc.ID // the id of a single request, for an error answer
}

// inspect returns the tools/call requests in body. A body the go-sdk cannot
// decode yields none: the go-sdk refuses it as a whole.
func inspect(body []byte) peek {
	// A method name "tools/call" appears literally in the body unless it
	// is written with escapes, which need a backslash; most requests are
	// neither and skip the decoding.
	if !bytes.Contains(body, toolsCall) && bytes.IndexByte(body, '\\') < 0 {
		return peek{}
	}
	msgs, batch, ok := readBatch(body)
	if !ok {
		return peek{}
	}
	p := peek{batch: batch}
	for _, msg := range msgs {
		if !msg.isRequest {
			continue
		}
		if !batch {
			p.id = msg.id
		}
		if msg.method != "tools/call" || !msg.id.IsValid() || len(msg.params) == 0 {
			continue // the go-sdk refuses a tools/call notification or one without params
		}
		var params *mcp.CallToolParamsRaw
		if !unmarshal(msg.params, &params) || params == nil {
			continue // invalid params (-32602) or null params: nothing is called
		}
		p.tools = append(p.tools, params.Name)
	}
	return p
}

// message is one decoded JSON-RPC message: a request (call or
// notification) when isRequest, else a response.
type message struct {
	isRequest bool
	method    string
	id        jsonrpc.ID
	params    encjson.RawMessage
}

// readBatch mirrors the go-sdk's readBatch (mcp/transport.go).
func readBatch(body []byte) (msgs []message, batch, ok bool) {
	var raw []encjson.RawMessage
	if unmarshal(body, &raw) {
		if len(raw) == 0 {
			return nil, true, false
		}
		msgs = make([]message, 0, len(raw))
		for _, r := range raw {
			msg, ok := decodeMessage(r)
			if !ok {
				return nil, true, false
			}
			msgs = append(msgs, msg)
		}
		return msgs, true, true
	}
	msg, ok := decodeMessage(body)
	if !ok {
		return nil, false, false
	}
	return []message{msg}, false, true
}

// wireMessage is the go-sdk's wireDecode (internal/jsonrpc2/messages.go).
type wireMessage struct {
	VersionTag string             `json:"jsonrpc"`
	ID         any                `json:"id,omitempty"`
	Method     encjson.RawMessage `json:"method"`
	Params     encjson.RawMessage `json:"params,omitempty"`
	Result     encjson.RawMessage `json:"result,omitempty"`
	Error      *jsonrpc.Error     `json:"error,omitempty"`
}

// decodeMessage mirrors jsonrpc.DecodeMessage, without its decoder's 32 KiB
// read buffer: the same fields, checks and outcome.
func decodeMessage(data []byte) (message, bool) {
	var w wireMessage
	if !unmarshal(data, &w) || w.VersionTag != "2.0" {
		return message{}, false
	}
	id, err := jsonrpc.MakeID(w.ID)
	if err != nil {
		return message{}, false
	}
	if len(w.Method) > 0 { // the "method" key is present, even as ""
		var method string
		if !unmarshal(w.Method, &method) {
			return message{}, false
		}
		return message{isRequest: true, method: method, id: id, params: w.Params}, true
	}
	if !id.IsValid() { // a response needs an id
		return message{}, false
	}
	return message{id: id}, true
}

// unmarshal decodes the first JSON value of data into v as the go-sdk's
// internal/json.Unmarshal does (a Decoder: trailing bytes ignored).
func unmarshal(data []byte, v any) bool {
	if tooDeep(data) {
		return false
	}
	_, err := json.Parse(data, v, parseFlags)
	return err == nil
}

// tooDeep mirrors the go-sdk's checkMaxDepth (internal/json): objects and
// arrays nested deeper than maxDepth, counted outside strings.
func tooDeep(data []byte) bool {
	depth := 0
	inString, escaped := false, false
	for _, b := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
			continue
		}
		switch b {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > maxDepth {
				return true
			}
		case '}', ']':
			if depth > 0 {
				depth--
			}
		}
	}
	return false
}
