package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCIMDConfig: the MCPAUTH_CIMD_* variables and their defaults; serve
// fetches documents only from public https hosts unless told otherwise.
func TestCIMDConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.load(envOf(safeEnv())); err != nil {
		t.Fatal(err)
	}
	if !c.CIMD || c.CIMDAllowPrivate || c.CIMDAllowHTTPLoopback || c.CIMDAllow != nil || c.CIMDDeny != nil ||
		c.CIMDMinCacheAge != 5*time.Minute || c.CIMDMaxCacheAge != 24*time.Hour {
		t.Errorf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}

	env := safeEnv()
	env["MCPAUTH_CIMD"] = "off"
	env["MCPAUTH_CIMD_ALLOW_PRIVATE"] = "true"
	env["MCPAUTH_CIMD_ALLOW"] = " example.com, https://apps.example.org/clients/ ,"
	env["MCPAUTH_CIMD_DENY"] = "bad.example.com"
	env["MCPAUTH_CIMD_CACHE_MIN_AGE"] = "30s"
	env["MCPAUTH_CIMD_CACHE_MAX_AGE"] = "1h"
	c = DefaultConfig()
	if err := c.load(envOf(env)); err != nil {
		t.Fatal(err)
	}
	if c.CIMD || !c.CIMDAllowPrivate || c.CIMDMinCacheAge != 30*time.Second || c.CIMDMaxCacheAge != time.Hour ||
		!slices.Equal(c.CIMDAllow, []string{"example.com", "https://apps.example.org/clients/"}) ||
		!slices.Equal(c.CIMDDeny, []string{"bad.example.com"}) {
		t.Errorf("loaded: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("validate: %v", err)
	}

	for _, tc := range []struct {
		set  map[string]string
		want string
	}{
		{map[string]string{"MCPAUTH_CIMD": "maybe"}, "MCPAUTH_CIMD: want on or off"},
		{map[string]string{"MCPAUTH_CIMD_ALLOW_PRIVATE": "yes please"}, "MCPAUTH_CIMD_ALLOW_PRIVATE: want true or false"},
		{map[string]string{"MCPAUTH_CIMD_ALLOW": "example.com, not a domain"}, `MCPAUTH_CIMD_ALLOW: "not a domain"`},
		{map[string]string{"MCPAUTH_CIMD_DENY": "ftp://example.com/"}, `MCPAUTH_CIMD_DENY: "ftp://example.com/"`},
		{map[string]string{"MCPAUTH_CIMD_CACHE_MIN_AGE": "0s"}, "MCPAUTH_CIMD_CACHE_MIN_AGE: must be between 1s"},
		{map[string]string{"MCPAUTH_CIMD_CACHE_MIN_AGE": "2h", "MCPAUTH_CIMD_CACHE_MAX_AGE": "1h"}, "MCPAUTH_CIMD_CACHE_MIN_AGE"},
		{map[string]string{"MCPAUTH_CIMD_CACHE_MAX_AGE": "720h"}, "MCPAUTH_CIMD_CACHE_MAX_AGE: must be positive and at most 168h"},
	} {
		env := safeEnv()
		for k, v := range tc.set {
			env[k] = v
		}
		c := DefaultConfig()
		err := c.load(envOf(env))
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error with %q", tc.set, err, tc.want)
		}
	}
}
