//go:build ui

// Package ui drives the web wizard of `edgefactory dev` in headless Chromium (chromedp) as a user does: it walks
// the wizard for bare metal, a board and a secure-boot cloud platform, compares each schematic with the one
// POST /schematics gives for the same choices, checks that every link of the final page answers, reopens the
// schematic with ?schematic-id=, goes Back, and runs axe-core on every page. Screenshots of each step are test
// artifacts (go test -artifacts). Its tests (build tag ui, `make test-ui`) need Debian's chromium and the real
// synthetic parts from `make deps`, and skip saying which is missing.
package ui
