package boltstore_test

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/boltstore"
)

// TestLastDaysBuiltOnOpen: a file written before the index existed (no
// last-days bucket) gets it on Open, from its users.
func TestLastDaysBuiltOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gk.db")
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	due := time.Date(2027, 3, 31, 16, 0, 0, 0, time.UTC)
	for _, id := range []string{"10042", "10043"} {
		if err := s.CreateAccount(t.Context(), policy.Account{ID: id, Mode: policy.ModeOn}, policy.AuditEntry{Action: "account.create"}); err != nil {
			t.Fatal(err)
		}
		err := s.Update(t.Context(), id, func(tx policy.Tx) error {
			if err := tx.PutUser(policy.User{Username: "anna", Active: true, AccessUntil: due}); err != nil {
				return err
			}
			return tx.PutUser(policy.User{Username: "bob", Active: true})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket([]byte("last-days")) }); err != nil {
		t.Fatalf("remove the index: %v", err)
	}
	db.Close()

	s = open(t, path, boltstore.Options{})
	got, err := s.LastDays(t.Context(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.LastDay{{Account: "10042", Username: "anna", Due: due}, {Account: "10043", Username: "anna", Due: due}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("last days after Open: %+v, want %+v", got, want)
	}
}

// TestReviewsBuiltOnOpen: a file written before the index of reviews
// existed (no reviews bucket) gets it on Open, from its accounts.
func TestReviewsBuiltOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gk.db")
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2027, 3, 31, 16, 0, 0, 0, time.UTC)
	noted := policy.Account{ID: "10043", Mode: policy.ModeOn, CreatedAt: created}
	noted.ReviewOverdueFor = noted.ReviewDue()
	for _, a := range []policy.Account{{ID: "10042", Mode: policy.ModeOn, CreatedAt: created}, noted} {
		if err := s.CreateAccount(t.Context(), a, policy.AuditEntry{Action: "account.create"}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket([]byte("reviews")) }); err != nil {
		t.Fatalf("remove the index: %v", err)
	}
	db.Close()

	s = open(t, path, boltstore.Options{})
	got, err := s.ReviewsDue(t.Context(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	due := created.Add(policy.DefaultReviewEvery)
	want := []policy.ReviewDue{{Account: "10042", Due: due}, {Account: "10043", Due: due, Noted: true}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("reviews after Open: %+v, want %+v", got, want)
	}
}
