package boltstore

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

func (t *txn) AccessRequests() ([]policy.AccessRequest, error) {
	return listJSON[policy.AccessRequest](t.b.Bucket(bRequests), "access request")
}

func (t *txn) AccessRequest(id string) (policy.AccessRequest, error) {
	var r policy.AccessRequest
	b := t.b.Bucket(bRequests)
	var v []byte
	if b != nil {
		v = b.Get([]byte(id))
	}
	if v == nil {
		return r, fmt.Errorf("access request %s of %s: %w", id, t.id, policy.ErrNotFound)
	}
	return r, json.Unmarshal(v, &r)
}

func (t *txn) PutAccessRequest(r policy.AccessRequest) error {
	if err := t.writable("put access request"); err != nil {
		return err
	}
	if r.ID == "" {
		return errors.New("put access request: empty ID")
	}
	r.Account = t.id
	b, err := t.b.CreateBucketIfNotExists(bRequests)
	if err != nil {
		return err
	}
	return putJSON(b, []byte(r.ID), r)
}

func (t *txn) DeleteAccessRequest(id string) error {
	if err := t.writable("delete access request"); err != nil {
		return err
	}
	if b := t.b.Bucket(bRequests); b != nil {
		return b.Delete([]byte(id))
	}
	return nil
}
