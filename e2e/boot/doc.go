//go:build boot

// Package boot boots what Edge Factory builds in QEMU and reads the synthetic Talos init's report from the serial
// console: the end-to-end proof that the ISO, UKI, disk image and PXE outputs really boot, with the intended kernel
// command line and extensions. It holds a sparse decompressor; the QEMU runner and the accelerator choice are in
// e2e/qemu. Its tests (build tag boot, `make test-boot`) need qemu-system-x86_64, OVMF, ipxe-qemu and the real
// synthetic parts from `make deps`, and skip saying which is missing.
package boot
