package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// startRedis runs a private redis-server on a loopback port for the test.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found (Debian/Ubuntu: apt-get install redis-server): %v", err)
	}
	port := strings.Split(freeAddr(t), ":")[1]
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := "redis://127.0.0.1:" + port + "/0"
	opts, _ := redis.ParseURL(url)
	c := redis.NewClient(opts)
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := c.Ping(t.Context()).Err(); err == nil {
			return url
		} else if time.Now().After(deadline) {
			t.Fatalf("redis-server did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRateLimitsSharedThroughRedis: with MCPAUTH_REDIS_URL, two replicas on
// one database count one budget; over it, 429 with Retry-After.
func TestRateLimitsSharedThroughRedis(t *testing.T) {
	redisURL := startRedis(t)
	dbURL := storagetest.URL(t)
	var bases []string
	for range 2 {
		addr := freeAddr(t)
		srv := startRun(t, []string{"serve"}, map[string]string{
			"MCPAUTH_ISSUER":           "http://127.0.0.1:9", // both replicas serve one issuer
			"MCPAUTH_ADDR":             addr,
			"MCPAUTH_DATABASE_URL":     dbURL,
			"MCPAUTH_SECRET":           goodSecret,
			"MCPAUTH_REDIS_URL":        redisURL,
			"MCPAUTH_RATE_LIMIT_TOKEN": "3-M",
			"MCPAUTH_LOG_LEVEL":        "warn",
		})
		bases = append(bases, srv.base)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"nobody"}, "client_secret": {"x"}}
	var statuses []int
	var last *http.Response
	for i := range 4 {
		resp, err := http.PostForm(bases[i%2]+"/token", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
		last = resp
	}
	if fmt.Sprint(statuses) != "[401 401 401 429]" {
		t.Fatalf("statuses across two replicas = %v, want three refusals of the bad client then 429", statuses)
	}
	if last.Header.Get("Retry-After") == "" || last.Header.Get("Content-Type") != "application/json" {
		t.Errorf("429 headers: %v", last.Header)
	}
}

func TestServeRefusesUnreachableRedis(t *testing.T) {
	env := safeEnv()
	env["MCPAUTH_DATABASE_URL"] = storagetest.URL(t)
	env["MCPAUTH_REDIS_URL"] = "redis://127.0.0.1:" + strings.Split(freeAddr(t), ":")[1]
	err := run(t.Context(), []string{"serve"}, envOf(env), &strings.Builder{}, &strings.Builder{})
	if err == nil || !strings.Contains(err.Error(), "MCPAUTH_REDIS_URL: cannot reach Redis") {
		t.Fatalf("serve with Redis down: %v", err)
	}
}
