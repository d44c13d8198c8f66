package assets

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/recipe"
)

func TestProblemsKeepsTheLatest(t *testing.T) {
	var p problems

	assert.Empty(t, p.recent())

	for i := range 3 {
		p.add(Problem{What: strconv.Itoa(i)})
	}

	assert.Equal(t, []string{"2", "1", "0"}, whats(p.recent()))

	for i := 3; i < problemsKept+7; i++ {
		p.add(Problem{What: strconv.Itoa(i)})
	}

	got := whats(p.recent())
	require.Len(t, got, problemsKept)
	assert.Equal(t, strconv.Itoa(problemsKept+6), got[0], "newest first")
	assert.Equal(t, "7", got[problemsKept-1], "the oldest seven dropped")
}

func whats(ps []Problem) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.What
	}

	return out
}

func TestBuildingTable(t *testing.T) {
	var b building

	now := time.Now()
	stage, end := b.begin(testRecipe("k1"), now)
	_, end2 := b.begin(testRecipe("k2"), now.Add(-time.Second))

	stage("building")

	got, ok := b.of("k1")
	require.True(t, ok)
	assert.Equal(t, "building", got.Stage)
	assert.Equal(t, []string{"k2", "k1"}, keys(b.all()), "oldest first")

	end()
	_, ok = b.of("k1")
	assert.False(t, ok)

	end2()
	assert.Empty(t, b.all())
}

func keys(bs []Build) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Key
	}

	return out
}

func testRecipe(key string) recipe.Recipe {
	return recipe.Recipe{Key: key, Version: "v1.13.0", Asset: recipe.Asset{Path: "metal-amd64.iso", Arch: "amd64"}}
}
