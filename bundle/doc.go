// Package bundle moves a Talos release into an air-gapped site: Mirror copies the images a site needs (the
// release's imager, installer base, catalogs, extensions and overlays, talosctl-all, the images a cluster pulls,
// anything extra) with their cosign signatures and OCI referrers from the registries that hold them into a bundle,
// and Open reads a bundle back for the importer.
//
// A bundle is an OCI image layout, as a directory or as a tar archive of that directory:
//
//	oci-layout                    {"imageLayoutVersion": "1.0.0"}
//	index.json                    one descriptor per image, signature and referrer copied, annotated
//	                              org.opencontainers.image.ref.name = its original full reference:
//	                              "ghcr.io/siderolabs/imager:v1.13.0" (tag form), "repo@sha256:<hex>" (an image
//	                              known only by digest), "repo:sha256-<hex>.sig" (a cosign signature tag),
//	                              "repo@sha256:<hex>" (a referrer)
//	bundle.json                   what the bundle holds (Manifest): format version, creation time, source, every
//	                              image with its original reference, digest, sizes, role, the Talos versions it
//	                              serves, its signatures and referrers; the public keys signatures were checked
//	                              with; the number and bytes of blobs
//	blobs/sha256/<hex>            every manifest, index, config and layer, named by the sha256 of its bytes
//
// See docs/bundle.md for the format in full.
//
// Guarantees: every blob is stored once, whatever number of images share it, and its name is the digest of its
// bytes; every descriptor reachable from index.json has its blob in the bundle (Bundle.Verify checks both);
// nothing is written under a final name before its bytes are complete and synced (temporary file, fsync, rename),
// so an interrupted Mirror leaves only whole blobs behind and a rerun fetches only what is missing, resuming a
// partly fetched blob where it stopped; a tar bundle appears under its name only once it is complete.
package bundle
