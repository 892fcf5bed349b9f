package redisstore

import (
	"errors"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

func (t *tx) AccessRequests() ([]policy.AccessRequest, error) {
	return t.requests.list(t.ctx, t.rtx, t.k.id)
}

func (t *tx) AccessRequest(id string) (policy.AccessRequest, error) {
	return t.requests.get(t.ctx, t.rtx, t.k.id, id)
}

func (t *tx) PutAccessRequest(r policy.AccessRequest) error {
	if err := t.writable("put access request"); err != nil {
		return err
	}
	if r.ID == "" {
		return errors.New("put access request: empty ID")
	}
	r.Account = t.k.id
	t.requests.put(r)
	return nil
}

func (t *tx) DeleteAccessRequest(id string) error {
	if err := t.writable("delete access request"); err != nil {
		return err
	}
	t.requests.del(id)
	return nil
}
