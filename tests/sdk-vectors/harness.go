// Runs sign.go on vectors.json and prints {key: value} as JSON (compared by compare.py).
package main

import (
	"encoding/json"
	"os"
	"time"
)

type vectors struct {
	Tickets []struct {
		Name   string `json:"name"`
		Secret string `json:"secret"`
		Fields Ticket `json:"fields"`
	} `json:"tickets"`
	SystemMessages []struct {
		Name, Secret, IntegratorID, ConversationID, Body string
		Timestamp                                       int64
	} `json:"systemMessages"`
	Webhook struct {
		Secret           string `json:"secret"`
		ToleranceSeconds int64  `json:"toleranceSeconds"`
		Cases            []struct {
			Name, Header, Body string
			Now                int64
		} `json:"cases"`
	} `json:"webhook"`
}

func main() {
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	var v vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		panic(err)
	}
	out := map[string]any{}
	for _, t := range v.Tickets {
		ticket, sig, err := SignTicket(t.Secret, t.Fields)
		if err != nil {
			panic(err)
		}
		out["ticket/"+t.Name+"/ticket"] = ticket
		out["ticket/"+t.Name+"/signature"] = sig
	}
	for _, m := range v.SystemMessages {
		out["sysmsg/"+m.Name+"/signature"] = SystemMessageSignature(m.Secret, m.IntegratorID, m.ConversationID, m.Body, m.Timestamp)
	}
	tol := time.Duration(v.Webhook.ToleranceSeconds) * time.Second
	for _, c := range v.Webhook.Cases {
		out["webhook/"+c.Name] = VerifyWebhook(v.Webhook.Secret, c.Header, []byte(c.Body), time.Unix(c.Now, 0), tol)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		panic(err)
	}
}
