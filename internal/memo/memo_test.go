package memo

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMemoStartsOverWhenFull(t *testing.T) {
	m := New[int, string](2)

	_, ok := m.Get(1)
	assert.False(t, ok, "empty memo")

	m.Put(1, "one")
	m.Put(2, "two")

	v, ok := m.Get(2)
	assert.True(t, ok)
	assert.Equal(t, "two", v)

	m.Put(3, "three") // full: forgets 1 and 2

	_, ok = m.Get(1)
	assert.False(t, ok)
	v, ok = m.Get(3)
	assert.True(t, ok)
	assert.Equal(t, "three", v)
}
