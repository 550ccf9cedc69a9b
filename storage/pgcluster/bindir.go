package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrNoBinaries reports that the PostgreSQL server programs could not be found.
// Its message is meant to be shown to an operator as is.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; " +
	"install them (Debian/Ubuntu: `apt-get install postgresql`, macOS: `brew install postgresql@16`) " +
	"or set MCPAUTH_DATABASE_URL to an existing database.")

// serverPrograms are the programs a directory must hold to run a cluster.
var serverPrograms = []string{"initdb", "pg_ctl", "postgres"}

// versionedBinDirs are the well-known places where packagers install one
// directory per major version. The version is the first number in the path.
var versionedBinDirs = []string{
	"/usr/lib/postgresql/*/bin",          // Debian, Ubuntu
	"/usr/pgsql-*/bin",                   // PGDG packages for RHEL, Fedora
	"/opt/homebrew/opt/postgresql@*/bin", // Homebrew on Apple silicon (keg-only formulae)
	"/usr/local/opt/postgresql@*/bin",    // Homebrew on Intel macOS
	"/Applications/Postgres.app/Contents/Versions/*/bin",
}

// BinDir finds the directory holding initdb, pg_ctl and postgres: the one
// `pg_config --bindir` names, else the one of initdb on PATH, else the
// highest version under /usr/lib/postgresql/*/bin (and the similar per-version
// directories of other packagers). It returns an error wrapping ErrNoBinaries
// when none holds all three.
func BinDir() (string, error) {
	return findBinDir("")
}

// findBinDir is BinDir with an explicit override, which, when set, is the only
// directory considered.
func findBinDir(override string) (string, error) {
	if override != "" {
		if hasServerPrograms(override) {
			return override, nil
		}
		return "", fmt.Errorf("%w Looked in: %s.", ErrNoBinaries, override)
	}

	var looked []string
	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, pgConfig, "--bindir").Output()
		cancel()
		if err == nil {
			dir := strings.TrimSpace(string(out))
			if dir != "" && hasServerPrograms(dir) {
				return dir, nil
			}
			if dir != "" {
				looked = append(looked, dir)
			}
		}
	}
	if initdb, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(initdb)
		if hasServerPrograms(dir) {
			return dir, nil
		}
		looked = append(looked, dir)
	}
	looked = append(looked, "PATH")
	for _, pattern := range versionedBinDirs {
		matches, _ := filepath.Glob(pattern) // the patterns are constant and valid
		sort.SliceStable(matches, func(i, j int) bool { return pathVersion(matches[i]) > pathVersion(matches[j]) })
		for _, dir := range matches {
			if hasServerPrograms(dir) {
				return dir, nil
			}
		}
		looked = append(looked, pattern)
	}
	return "", fmt.Errorf("%w Looked in: %s.", ErrNoBinaries, strings.Join(looked, ", "))
}

// hasServerPrograms reports whether dir holds executable initdb, pg_ctl and postgres.
func hasServerPrograms(dir string) bool {
	for _, name := range serverPrograms {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// pathVersion extracts the first number in path, as a float so that "9.6"
// sorts below "10"; it is 0 when there is none.
func pathVersion(path string) float64 {
	start := strings.IndexAny(path, "0123456789")
	if start < 0 {
		return 0
	}
	end := start
	for end < len(path) && (path[end] >= '0' && path[end] <= '9' || path[end] == '.') {
		end++
	}
	v, _ := strconv.ParseFloat(strings.TrimRight(path[start:end], "."), 64)
	return v
}
