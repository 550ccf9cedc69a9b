package pgcluster

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// errNotReady means the server answered but is starting up or shutting down.
var errNotReady = errors.New("the database system is starting up or shutting down")

// probe reports whether a PostgreSQL server on 127.0.0.1:port accepts
// connections, the way pg_isready does: it sends a startup message and reads
// the first reply. An authentication request, or any error other than
// SQLSTATE 57P03 (cannot_connect_now), means the server is ready.
func probe(port int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}

	// StartupMessage, protocol 3.0 (PostgreSQL docs, "Message Formats").
	var body bytes.Buffer
	_ = binary.Write(&body, binary.BigEndian, int32(3<<16))
	for _, s := range []string{"user", "postgres", "database", "postgres", ""} {
		body.WriteString(s)
		body.WriteByte(0)
	}
	msg := binary.BigEndian.AppendUint32(nil, uint32(body.Len()+4))
	msg = append(msg, body.Bytes()...)
	if _, err := conn.Write(msg); err != nil {
		return fmt.Errorf("send startup message to %s: %w", addr, err)
	}

	r := bufio.NewReader(conn)
	var head [5]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return fmt.Errorf("read reply from %s: %w", addr, err)
	}
	if head[0] != 'E' {
		// 'R' (an authentication request or AuthenticationOk) or
		// 'v' (NegotiateProtocolVersion): the server is serving.
		// Say goodbye (Terminate) so that the server logs nothing; the
		// server is up whether or not this write succeeds.
		_, _ = conn.Write([]byte{'X', 0, 0, 0, 4})
		return nil
	}
	n := int(binary.BigEndian.Uint32(head[1:])) - 4
	if n < 0 || n > 64<<10 {
		return fmt.Errorf("malformed error reply from %s", addr)
	}
	fields := make([]byte, n)
	if _, err := io.ReadFull(r, fields); err != nil {
		return fmt.Errorf("read error reply from %s: %w", addr, err)
	}
	for f := range bytes.SplitSeq(fields, []byte{0}) {
		if len(f) > 1 && f[0] == 'C' && string(f[1:]) == "57P03" {
			return errNotReady
		}
	}
	return nil
}
