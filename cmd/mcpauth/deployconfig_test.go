package main

import (
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestDeployPolicyFile: the tool-policy file the Kubernetes ConfigMap
// mounts (deploy/k8s/configmap.yaml) is one serve accepts.
func TestDeployPolicyFile(t *testing.T) {
	b, err := os.ReadFile("../../deploy/k8s/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var cm struct {
			Data map[string]string `json:"data"`
		}
		if err := yaml.Unmarshal([]byte(doc), &cm); err != nil {
			t.Fatal(err)
		}
		policy, ok := cm.Data["mcpauth.yaml"]
		if !ok {
			continue
		}
		found = true
		if _, err := parseToolConfig("configmap.yaml", []byte(policy), envOf(nil)); err != nil {
			t.Errorf("the ConfigMap's mcpauth.yaml does not load:\n%v", err)
		}
	}
	if !found {
		t.Fatal("deploy/k8s/configmap.yaml has no mcpauth.yaml")
	}
}
