// chats3 signing helpers for Go 1.19+ (standard library only).
// Copy into your code and change the package name.
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Ticket is an embed ticket; the JSON keys come out in this order.
type Ticket struct {
	IntegratorID   string `json:"integratorId"`
	ConversationID string `json:"conversationId"`
	UserID         string `json:"userId"`
	DisplayName    string `json:"displayName"`
	AvatarURL      string `json:"avatarUrl,omitempty"`
	Role           string `json:"role"`
	Origin         string `json:"origin"`
	IssuedAt       int64  `json:"issuedAt"`  // epoch milliseconds
	ExpiresAt      int64  `json:"expiresAt"` // epoch milliseconds
	Nonce          string `json:"nonce"`     // single-use
}

// HMACBase64URL is base64url (no padding) HMAC-SHA256: the signature format of tickets and system messages.
func HMACBase64URL(secret, data string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(data))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// SignTicket fills the defaults, serializes the ticket and signs its exact bytes.
// Send both strings unchanged.
func SignTicket(secret string, t Ticket) (ticket, signature string, err error) {
	if t.IssuedAt == 0 {
		t.IssuedAt = time.Now().UnixMilli()
	}
	if t.ExpiresAt == 0 {
		t.ExpiresAt = t.IssuedAt + 60_000
	}
	if t.Role == "" {
		t.Role = "participant"
	}
	if t.Nonce == "" {
		b := make([]byte, 16)
		if _, err = rand.Read(b); err != nil {
			return "", "", err
		}
		t.Nonce = hex.EncodeToString(b)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep < > & as they are, like JSON.stringify
	if err = enc.Encode(t); err != nil {
		return "", "", err
	}
	ticket = strings.TrimSuffix(buf.String(), "\n")
	return ticket, HMACBase64URL(secret, ticket), nil
}

// jsonString quotes s exactly like JavaScript's JSON.stringify (encoding/json differs on
// U+2028/U+2029 and, before Go 1.22, on \b and \f).
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// SystemMessageSignature signs a POST /api/v1/system-message body; timestamp is epoch milliseconds.
func SystemMessageSignature(secret, integratorID, conversationID, body string, timestamp int64) string {
	signed := `{"integratorId":` + jsonString(integratorID) +
		`,"conversationId":` + jsonString(conversationID) +
		`,"body":` + jsonString(body) +
		`,"timestamp":` + strconv.FormatInt(timestamp, 10) + `}`
	return HMACBase64URL(secret, signed)
}

// VerifyWebhook checks X-Chats3-Signature ("t=<unix s>,v1=<hex>") against the raw request body.
func VerifyWebhook(secret, header string, rawBody []byte, now time.Time, tolerance time.Duration) bool {
	var t string
	var candidates []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if k == "t" {
			t = v
		} else if k == "v1" {
			candidates = append(candidates, v)
		}
	}
	ts, err := strconv.ParseInt(t, 10, 64)
	if err != nil || ts < 0 || math.Abs(float64(now.Unix()-ts)) > tolerance.Seconds() {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(t + "."))
	mac.Write(rawBody)
	expected := hex.EncodeToString(mac.Sum(nil))
	for _, c := range candidates {
		if hmac.Equal([]byte(expected), []byte(c)) {
			return true
		}
	}
	return false
}
