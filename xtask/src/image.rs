//! `cargo xtask image`: the profiler as a container image with no base image, written as an
//! archive that `docker load -i` reads (and containerd's `ctr images import`).
//!
//! The binary is linked statically, so the image needs nothing but it: one layer holds
//! `/usr/local/bin/profiler`, an empty `/tmp` and `/var/lib/profiler` (where `profiler serve`
//! keeps its recording). The layer is reproducible: entries in order, owned by root, with fixed
//! times, so the same binary gives the same layer digest.
//!
//! The archive has the layout `docker save` writes since Docker 25: the blobs of an OCI image
//! layout (`oci-layout`, `index.json`, `blobs/sha256/…`) and the `manifest.json` that names the
//! config and layer blobs and the tags. Older Docker (20.10 on this machine) reads only
//! `manifest.json`; containerd and other OCI tools read `index.json`.
use std::{
    fs,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

use crate::{build, setup};

/// The image's name, and the binary's.
const NAME: &str = "profiler";
/// Where the binary lives in the image.
const BINARY: &str = "usr/local/bin/profiler";
/// The port `profiler serve` listens on by default.
const PORT: u16 = 9746;
/// The time of every entry in the layer (the epoch): a rebuild of the same binary gives the
/// same layer, and so the same digest.
const LAYER_MTIME: u64 = 0;

/// Sets up (the kernel programs need the eBPF toolchain), builds the image and says how to load
/// it.
pub(crate) fn run() -> Result<()> {
    setup::run()?;
    let archive = build()?;
    let size = fs::metadata(&archive)
        .with_context(|| format!("reading {}", archive.display()))?
        .len();
    #[expect(clippy::cast_precision_loss, reason = "a size shown in MiB")]
    let mib = size as f64 / f64::from(1 << 20);
    println!("{} ({mib:.1} MiB)", archive.display());
    println!("load it with: docker load -i {}", archive.display());
    Ok(())
}

/// Builds the statically linked profiler and writes the image archive
/// (`target/image/profiler-<version>.tar`); returns its path. The machine must be set up.
pub(crate) fn build() -> Result<PathBuf> {
    let root = build::workspace_root();
    let target = build::target_dir(&root)?;
    let package = package_metadata(&root)?;
    let binary = build::build_static(&root, &target, NAME, NAME).context(
        "building the statically linked profiler (`cargo xtask setup` installs the eBPF \
         toolchain it needs)",
    )?;
    let bytes = fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
    let elf = Elf::parse(&bytes).with_context(|| format!("reading {}", binary.display()))?;
    if let Some(loader) = &elf.interpreter {
        bail!(
            "{} is dynamically linked (it asks for the loader {loader}), so it cannot run in an \
             image without a libc; check that `-C target-feature=+crt-static` reached the link",
            binary.display()
        );
    }
    let meta = ImageMeta {
        version: package.version,
        description: package.description,
        licenses: package.licenses,
        source: package.repository,
        architecture: elf.architecture,
        created: rfc3339(created_secs()?),
    };
    if meta.source.is_none() {
        eprintln!(
            "xtask image: profiler/Cargo.toml has no `repository`, so the image has no \
             org.opencontainers.image.source label"
        );
    }
    let image = Image::new(&meta, &bytes)?;
    let dir = target.join("image");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{NAME}-{}.tar", meta.version));
    // Written aside and renamed, so an interrupted build never leaves a truncated archive at
    // the path a test or a user loads.
    let partial = dir.join(format!(".{NAME}-{}.tar.partial", meta.version));
    fs::write(&partial, image.archive()?)
        .with_context(|| format!("writing {}", partial.display()))?;
    fs::rename(&partial, &path)
        .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
    eprintln!(
        "xtask image: {} with image id {}",
        meta.tags().join(" and "),
        image.config.digest
    );
    Ok(path)
}

/// What the image says about the profiler package, from `cargo metadata`.
struct PackageMetadata {
    version: String,
    description: Option<String>,
    licenses: Option<String>,
    repository: Option<String>,
}

/// The profiler package's version, description, license and repository.
fn package_metadata(root: &Path) -> Result<PackageMetadata> {
    let metadata = build::cargo_metadata(root)?;
    let package = metadata["packages"]
        .as_array()
        .and_then(|packages| packages.iter().find(|p| p["name"] == NAME))
        .context("cargo metadata lists no `profiler` package")?;
    let text = |key: &str| package[key].as_str().map(str::to_owned);
    Ok(PackageMetadata {
        version: text("version").context("cargo metadata gives the profiler no version")?,
        description: text("description"),
        licenses: text("license"),
        repository: text("repository"),
    })
}

/// The image's creation time in seconds since the epoch: `$SOURCE_DATE_EPOCH` when set (for a
/// reproducible image id), else now.
fn created_secs() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(secs) => secs.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={secs:?} is not a number of seconds since 1970")
        }),
        Err(_) => Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs()),
    }
}

/// What the image's config says beside its layer.
struct ImageMeta {
    /// The profiler's version (tag and label).
    version: String,
    description: Option<String>,
    licenses: Option<String>,
    /// Where the source is, when the package names it.
    source: Option<String>,
    /// The OCI name of the binary's architecture (`amd64`, `arm64`).
    architecture: &'static str,
    /// RFC 3339.
    created: String,
}

impl ImageMeta {
    /// `profiler:<version>` and `profiler:latest`.
    fn tags(&self) -> Vec<String> {
        vec![format!("{NAME}:{}", self.version), format!("{NAME}:latest")]
    }

    /// The OCI annotations used as labels.
    fn labels(&self) -> Value {
        let mut labels = json!({
            "org.opencontainers.image.title": NAME,
            "org.opencontainers.image.version": self.version,
        });
        for (key, value) in [
            ("org.opencontainers.image.source", &self.source),
            ("org.opencontainers.image.description", &self.description),
            ("org.opencontainers.image.licenses", &self.licenses),
        ] {
            if let Some(value) = value {
                labels[key] = json!(value);
            }
        }
        labels
    }

    /// The image config (OCI image config, which Docker reads as its own).
    fn config(&self, diff_id: &str) -> Value {
        json!({
            "created": self.created,
            "architecture": self.architecture,
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Entrypoint": [format!("/{BINARY}")],
                "Cmd": ["serve"],
                "ExposedPorts": { format!("{PORT}/tcp"): {} },
                "WorkingDir": "/",
                "Labels": self.labels(),
            },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
            "history": [{ "created": self.created, "created_by": "cargo xtask image" }],
        })
    }
}

/// A blob of the image (layer, config or manifest) with its digest.
struct Blob {
    bytes: Vec<u8>,
    /// `sha256:<hex>`.
    digest: String,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Self {
        let digest = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
        Self { bytes, digest }
    }

    fn json(value: &Value) -> Result<Self> {
        Ok(Self::new(
            serde_json::to_vec(value).context("serializing image JSON")?,
        ))
    }

    /// Where the blob is in the archive: `blobs/sha256/<hex>`.
    fn path(&self) -> String {
        format!("blobs/{}", self.digest.replacen(':', "/", 1))
    }

    /// An OCI descriptor of the blob.
    fn descriptor(&self, media_type: &str) -> Value {
        json!({ "mediaType": media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

/// The image: its single layer, its config and its OCI manifest, and the tags.
struct Image {
    /// The uncompressed layer tar, whose digest is the config's only `diff_id`.
    layer: Blob,
    config: Blob,
    manifest: Blob,
    /// `name:tag`, the version's first.
    tags: Vec<String>,
}

impl Image {
    /// The image of the profiler binary `profiler` described by `meta`.
    fn new(meta: &ImageMeta, profiler: &[u8]) -> Result<Self> {
        let layer = Blob::new(layer_tar(profiler)?);
        let config = Blob::json(&meta.config(&layer.digest))?;
        let manifest = Blob::json(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.descriptor("application/vnd.oci.image.config.v1+json"),
            "layers": [layer.descriptor("application/vnd.oci.image.layer.v1.tar")],
        }))?;
        Ok(Self {
            layer,
            config,
            manifest,
            tags: meta.tags(),
        })
    }

    /// Docker's `manifest.json`: the config and layer files of each image, and its tags.
    fn docker_manifest(&self) -> Value {
        json!([{
            "Config": self.config.path(),
            "RepoTags": self.tags,
            "Layers": [self.layer.path()],
        }])
    }

    /// The OCI `index.json`: the manifest once per tag, named by the annotations containerd
    /// (the full reference) and OCI tools (the tag) read.
    fn oci_index(&self) -> Value {
        let manifests: Vec<Value> = self
            .tags
            .iter()
            .map(|name_and_tag| {
                let tag = name_and_tag
                    .rsplit_once(':')
                    .map_or(name_and_tag.as_str(), |(_, tag)| tag);
                let mut manifest = self
                    .manifest
                    .descriptor("application/vnd.oci.image.manifest.v1+json");
                manifest["annotations"] = json!({
                    "io.containerd.image.name": format!("docker.io/library/{name_and_tag}"),
                    "org.opencontainers.image.ref.name": tag,
                });
                manifest
            })
            .collect();
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        })
    }

    /// The archive `docker load` reads: the blobs, `index.json`, `manifest.json` and
    /// `oci-layout`, in that (sorted) order.
    fn archive(&self) -> Result<Vec<u8>> {
        let json = |value: &Value| serde_json::to_vec(value).context("serializing image JSON");
        let mut blobs = [&self.config, &self.layer, &self.manifest];
        blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        let mut archive = tar::Builder::new(Vec::new());
        for dir in ["blobs", "blobs/sha256"] {
            append(&mut archive, dir, EntryType::Directory, 0o755, &[])?;
        }
        for blob in blobs {
            append(
                &mut archive,
                &blob.path(),
                EntryType::Regular,
                0o644,
                &blob.bytes,
            )?;
        }
        let files = [
            ("index.json", json(&self.oci_index())?),
            ("manifest.json", json(&self.docker_manifest())?),
            (
                "oci-layout",
                json(&json!({ "imageLayoutVersion": "1.0.0" }))?,
            ),
        ];
        for (path, bytes) in files {
            append(&mut archive, path, EntryType::Regular, 0o644, &bytes)?;
        }
        archive.into_inner().context("finishing the image archive")
    }
}

/// The layer: `/tmp` (sticky, writable by all), `/usr/local/bin/profiler` and
/// `/var/lib/profiler`, with their parents, sorted, owned by root, at [`LAYER_MTIME`].
fn layer_tar(profiler: &[u8]) -> Result<Vec<u8>> {
    let mut layer = tar::Builder::new(Vec::new());
    append(&mut layer, "tmp", EntryType::Directory, 0o1777, &[])?;
    for dir in ["usr", "usr/local", "usr/local/bin"] {
        append(&mut layer, dir, EntryType::Directory, 0o755, &[])?;
    }
    append(&mut layer, BINARY, EntryType::Regular, 0o755, profiler)?;
    for dir in ["var", "var/lib", "var/lib/profiler"] {
        append(&mut layer, dir, EntryType::Directory, 0o755, &[])?;
    }
    layer.into_inner().context("finishing the layer")
}

/// Appends an entry owned by root (uid and gid 0) at [`LAYER_MTIME`].
fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: EntryType,
    mode: u32,
    data: &[u8],
) -> Result<()> {
    let mut header = Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header
        .set_username("root")
        .and_then(|()| header.set_groupname("root"))
        .context("naming the owner in a tar header")?;
    header.set_mtime(LAYER_MTIME);
    header.set_size(u64::try_from(data.len()).context("an entry larger than 2^64 bytes")?);
    tar.append_data(&mut header, path, data)
        .with_context(|| format!("adding {path} to a tar"))
}

/// Lower-case hexadecimal.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `secs` since the epoch as an RFC 3339 UTC time (`2026-12-01T16:04:08Z`).
fn rfc3339(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's `civil_from_days`), in unsigned arithmetic since
    // the date is after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// What the image needs to know of the binary: its architecture, and the loader it asks for.
struct Elf {
    /// The OCI name of `e_machine`.
    architecture: &'static str,
    /// The `PT_INTERP` path: a dynamically linked binary's loader (`None` when static).
    interpreter: Option<String>,
}

impl Elf {
    /// Reads the header and program headers of a 64-bit little-endian ELF executable.
    fn parse(bytes: &[u8]) -> Result<Self> {
        const EM_X86_64: u64 = 62;
        const EM_AARCH64: u64 = 183;
        const PT_INTERP: u64 = 3;
        let field = |at: usize, len: usize| -> Result<u64> {
            let slice = at
                .checked_add(len)
                .and_then(|end| bytes.get(at..end))
                .context("a truncated ELF file")?;
            Ok(slice.iter().rev().fold(0, |n, &b| n << 8 | u64::from(b)))
        };
        let offset = |value: u64| usize::try_from(value).context("an ELF offset past memory");
        // ELF magic, ELFCLASS64, ELFDATA2LSB.
        if bytes.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
            bail!("not a 64-bit little-endian ELF file");
        }
        let architecture = match field(0x12, 2)? {
            EM_X86_64 => "amd64",
            EM_AARCH64 => "arm64",
            other => bail!("an ELF file for machine {other}, which the image cannot name"),
        };
        let phoff = offset(field(0x20, 8)?)?;
        let phentsize = offset(field(0x36, 2)?)?;
        let phnum = offset(field(0x38, 2)?)?;
        let mut interpreter = None;
        for index in 0..phnum {
            let header = phoff + index * phentsize;
            if field(header, 4)? == PT_INTERP {
                let start = offset(field(header + 0x08, 8)?)?;
                let len = offset(field(header + 0x20, 8)?)?;
                let path = start
                    .checked_add(len)
                    .and_then(|end| bytes.get(start..end))
                    .context("a PT_INTERP past the end of the file")?;
                let path = String::from_utf8_lossy(path);
                interpreter = Some(path.trim_end_matches('\0').to_owned());
            }
        }
        Ok(Self {
            architecture,
            interpreter,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn meta() -> ImageMeta {
        ImageMeta {
            version: "1.2.3".into(),
            description: Some("a profiler".into()),
            licenses: Some("MIT OR Apache-2.0".into()),
            source: Some("https://example.invalid/profiler".into()),
            architecture: "amd64",
            created: rfc3339(1_700_000_000),
        }
    }

    const BINARY_BYTES: &[u8] = b"\x7fELF not really a binary";

    /// One entry of a tar, as read back.
    struct Entry {
        path: String,
        kind: EntryType,
        mode: u32,
        /// uid, gid and mtime.
        owner_and_time: (u64, u64, u64),
        data: Vec<u8>,
    }

    /// Every entry of `tar`, in order.
    fn entries(tar: &[u8]) -> Vec<Entry> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .expect("a tar")
            .map(|entry| {
                let mut entry = entry.expect("an entry");
                let header = entry.header().clone();
                let path = entry.path().expect("a path").display().to_string();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).expect("its data");
                Entry {
                    path,
                    kind: header.entry_type(),
                    mode: header.mode().expect("a mode"),
                    owner_and_time: (
                        header.uid().expect("a uid"),
                        header.gid().expect("a gid"),
                        header.mtime().expect("an mtime"),
                    ),
                    data,
                }
            })
            .collect()
    }

    /// The archive's files by path.
    fn archive_file(archive: &[u8], path: &str) -> Vec<u8> {
        entries(archive)
            .into_iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("no {path} in the archive"))
            .data
    }

    fn archive_json(archive: &[u8], path: &str) -> Value {
        serde_json::from_slice(&archive_file(archive, path)).expect("JSON")
    }

    #[test]
    fn the_layer_holds_the_binary_tmp_and_the_record_dir_owned_by_root() {
        let layer = layer_tar(BINARY_BYTES).expect("a layer");
        let entries = entries(&layer);
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "tmp",
                "usr",
                "usr/local",
                "usr/local/bin",
                "usr/local/bin/profiler",
                "var",
                "var/lib",
                "var/lib/profiler"
            ]
        );
        let mut sorted = paths.clone();
        sorted.sort_unstable();
        assert_eq!(paths, sorted, "sorted entries");
        for entry in &entries {
            let path = &entry.path;
            assert_eq!(entry.owner_and_time, (0, 0, LAYER_MTIME), "{path}");
            let expected = match path.as_str() {
                "tmp" => (EntryType::Directory, 0o1777),
                BINARY => (EntryType::Regular, 0o755),
                _ => (EntryType::Directory, 0o755),
            };
            assert_eq!((entry.kind, entry.mode), expected, "{path}");
        }
        let binary = entries
            .iter()
            .find(|e| e.path == BINARY)
            .expect("the binary");
        assert_eq!(binary.data, BINARY_BYTES);
    }

    #[test]
    fn the_same_binary_gives_the_same_layer_and_archive() {
        let a = Image::new(&meta(), BINARY_BYTES).expect("an image");
        let b = Image::new(&meta(), BINARY_BYTES).expect("an image");
        assert_eq!(a.layer.bytes, b.layer.bytes);
        assert_eq!(
            a.archive().expect("an archive"),
            b.archive().expect("an archive")
        );
        let other = Image::new(&meta(), b"another binary").expect("an image");
        assert_ne!(a.layer.digest, other.layer.digest);
    }

    #[test]
    fn the_config_names_the_layer_by_its_digest_and_the_archive_names_the_config_by_its() {
        let image = Image::new(&meta(), BINARY_BYTES).expect("an image");
        let archive = image.archive().expect("an archive");
        let manifest = archive_json(&archive, "manifest.json");
        let entry = &manifest[0];
        assert_eq!(manifest.as_array().map(Vec::len), Some(1));
        assert_eq!(
            entry["RepoTags"],
            json!(["profiler:1.2.3", "profiler:latest"])
        );

        let config_path = entry["Config"].as_str().expect("a Config path");
        let config_bytes = archive_file(&archive, config_path);
        assert_eq!(
            config_path,
            format!("blobs/sha256/{}", hex(&Sha256::digest(&config_bytes)))
        );

        let layer_path = entry["Layers"][0].as_str().expect("a layer path");
        let layer = archive_file(&archive, layer_path);
        let diff_id = format!("sha256:{}", hex(&Sha256::digest(&layer)));
        assert_eq!(layer_path, format!("blobs/{}", diff_id.replace(':', "/")));
        let config: Value = serde_json::from_slice(&config_bytes).expect("JSON");
        assert_eq!(
            config["rootfs"],
            json!({"type": "layers", "diff_ids": [diff_id]})
        );
        assert_eq!(
            entries(&layer)
                .into_iter()
                .find(|e| e.path == BINARY)
                .map(|e| e.data),
            Some(BINARY_BYTES.to_vec())
        );
    }

    #[test]
    fn the_config_runs_serve_on_its_port_with_labels() {
        let config = meta().config("sha256:00");
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        let run = &config["config"];
        assert_eq!(run["Entrypoint"], json!(["/usr/local/bin/profiler"]));
        assert_eq!(run["Cmd"], json!(["serve"]));
        assert_eq!(run["ExposedPorts"], json!({"9746/tcp": {}}));
        let labels = &run["Labels"];
        assert_eq!(labels["org.opencontainers.image.title"], "profiler");
        assert_eq!(labels["org.opencontainers.image.version"], "1.2.3");
        assert_eq!(
            labels["org.opencontainers.image.source"],
            "https://example.invalid/profiler"
        );
        let unnamed = ImageMeta {
            source: None,
            ..meta()
        };
        assert!(unnamed.labels()["org.opencontainers.image.source"].is_null());
    }

    #[test]
    fn the_oci_index_points_at_the_manifest_which_points_at_config_and_layer() {
        let image = Image::new(&meta(), BINARY_BYTES).expect("an image");
        let archive = image.archive().expect("an archive");
        assert_eq!(
            archive_json(&archive, "oci-layout"),
            json!({"imageLayoutVersion": "1.0.0"})
        );
        let index = archive_json(&archive, "index.json");
        let names: Vec<&Value> = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|m| &m["annotations"]["io.containerd.image.name"])
            .collect();
        assert_eq!(
            names,
            [
                "docker.io/library/profiler:1.2.3",
                "docker.io/library/profiler:latest"
            ]
        );
        let descriptor = &index["manifests"][0];
        assert_eq!(
            descriptor["annotations"]["org.opencontainers.image.ref.name"],
            "1.2.3"
        );
        assert_eq!(descriptor["digest"], index["manifests"][1]["digest"]);
        let digest = descriptor["digest"].as_str().expect("a digest");
        let manifest_bytes = archive_file(&archive, &format!("blobs/{}", digest.replace(':', "/")));
        assert_eq!(descriptor["size"], manifest_bytes.len());
        let manifest: Value = serde_json::from_slice(&manifest_bytes).expect("JSON");
        for descriptor in [&manifest["config"], &manifest["layers"][0]] {
            let digest = descriptor["digest"].as_str().expect("a digest");
            let blob = archive_file(&archive, &format!("blobs/{}", digest.replace(':', "/")));
            assert_eq!(descriptor["size"], blob.len());
            assert_eq!(digest, format!("sha256:{}", hex(&Sha256::digest(&blob))));
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    /// A minimal ELF header with one program header of type `p_type`, and the loader path
    /// after it when it is `PT_INTERP`.
    fn elf(machine: u16, p_type: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; 0x40 + 0x38];
        bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        bytes[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        bytes[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        bytes[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        bytes[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        bytes[0x40..0x44].copy_from_slice(&p_type.to_le_bytes());
        let loader = b"/lib64/ld-linux-x86-64.so.2\0";
        let at = bytes.len() as u64;
        bytes[0x48..0x50].copy_from_slice(&at.to_le_bytes());
        bytes[0x60..0x68].copy_from_slice(&(loader.len() as u64).to_le_bytes());
        bytes.extend_from_slice(loader);
        bytes
    }

    #[test]
    fn a_dynamic_binary_names_its_loader_and_a_static_one_none() {
        let dynamic = Elf::parse(&elf(62, 3)).expect("an ELF file");
        assert_eq!(dynamic.architecture, "amd64");
        assert_eq!(
            dynamic.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        let fixed = Elf::parse(&elf(183, 1)).expect("an ELF file");
        assert_eq!(fixed.architecture, "arm64");
        assert_eq!(fixed.interpreter, None);
        assert!(Elf::parse(&elf(3, 1)).is_err(), "i386 has no name here");
        assert!(Elf::parse(b"#!/bin/sh\n").is_err());
        assert!(Elf::parse(&elf(62, 3)[..0x50]).is_err(), "truncated");
    }

    #[test]
    fn the_running_test_binary_parses() {
        let me = std::env::current_exe().expect("the test binary");
        let bytes = fs::read(me).expect("readable");
        let elf = Elf::parse(&bytes).expect("an ELF file");
        assert_eq!(
            elf.architecture,
            if cfg!(target_arch = "x86_64") {
                "amd64"
            } else {
                "arm64"
            }
        );
    }
}
