//! Layer footprint: each layer's gzip-compressed size (what a registry stores and a node pulls), its files,
//! dive-style efficiency, and the measured time to unpack the image as a node does after a pull.
//!
//! Compressing a large image takes tens of seconds, so results are cached: per layer by diff ID (an unchanged
//! base layer is never compressed twice, whatever image it is in) and per image by image ID (an unchanged
//! image is not even `docker save`d again). The compressed layers stay in the cache; unpacking reads them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use crate::dive;
use crate::docker::{Docker, ImageInfo};
use crate::model::{Efficiency, Layer};

/// The cache's entry format; bump it when `LayerFacts` or `ImageFacts` change meaning.
const FORMAT: &str = "v1";

/// gzip at its default level, as image layers are usually pushed.
const LEVEL: u32 = 6;

pub struct Footprint {
    pub layers: Vec<Layer>,
    pub compressed_bytes: u64,
    pub efficiency: Efficiency,
    /// How many layers had to be compressed in this run (0 on a warm cache).
    pub compressed_now: usize,
}

/// One entry of a layer tar: its path as stored, whether it is a directory, its size.
type RawEntry = (String, bool, u64);

/// What is cached about one layer, keyed by its diff ID.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LayerFacts {
    tar_bytes: u64,
    compressed_bytes: u64,
    entries: Vec<RawEntry>,
}

/// What is cached about one image, keyed by its image ID.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ImageFacts {
    /// (diff ID, command that created the layer), bottom first.
    layers: Vec<(String, String)>,
}

pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens the cache under `dir`, in a subdirectory named for the format of its entries, so a newer
    /// xtask never reads entries an older one wrote differently.
    pub fn new(dir: PathBuf) -> Result<Cache> {
        let dir = dir.join(FORMAT);
        for sub in ["layers", "images", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        Ok(Cache { dir })
    }

    fn layer_json(&self, diff_id: &str) -> PathBuf {
        self.dir
            .join("layers")
            .join(format!("{}.json", hex(diff_id)))
    }

    pub fn layer_gz(&self, diff_id: &str) -> PathBuf {
        self.dir
            .join("layers")
            .join(format!("{}.tar.gz", hex(diff_id)))
    }

    fn image_json(&self, image_id: &str) -> PathBuf {
        self.dir
            .join("images")
            .join(format!("{}.json", hex(image_id)))
    }

    fn layer(&self, diff_id: &str) -> Option<LayerFacts> {
        if !self.layer_gz(diff_id).is_file() {
            return None;
        }
        read_json(&self.layer_json(diff_id))
    }
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Writes through a temporary file and a rename, so a crash never leaves a half-written cache entry.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// Measures every layer of `image`, compressing only the layers the cache does not know.
pub fn measure(docker: &Docker, tag: &str, image: &ImageInfo, cache: &Cache) -> Result<Footprint> {
    let known: Option<ImageFacts> = read_json(&cache.image_json(&image.id));
    let all_cached =
        |facts: &ImageFacts| facts.layers.iter().all(|(d, _)| cache.layer(d).is_some());
    let (facts, compressed_now) = match known {
        Some(facts) if all_cached(&facts) => (facts, 0),
        _ => save_and_compress(docker, tag, image, cache)?,
    };

    let mut layers = Vec::with_capacity(facts.layers.len());
    let mut trees = Vec::with_capacity(facts.layers.len());
    for (diff_id, created_by) in &facts.layers {
        let lf = cache
            .layer(diff_id)
            .ok_or_else(|| anyhow!("layer {diff_id} missing from the cache"))?;
        let entries: Vec<dive::Entry> = lf
            .entries
            .iter()
            .map(|(path, is_dir, size)| dive::classify(path, *is_dir, *size))
            .collect();
        layers.push(Layer {
            diff_id: diff_id.clone(),
            tar_bytes: lf.tar_bytes,
            size_bytes: entries
                .iter()
                .filter(|e| e.kind == dive::EntryKind::File)
                .map(|e| e.size)
                .sum(),
            compressed_bytes: lf.compressed_bytes,
            file_count: entries
                .iter()
                .filter(|e| e.kind == dive::EntryKind::File)
                .count() as u64,
            created_by: created_by.clone(),
        });
        trees.push(entries);
    }
    let sizes: Vec<u64> = layers.iter().map(|l| l.size_bytes).collect();
    let efficiency = dive::efficiency(&trees, &sizes);
    let compressed_bytes = layers.iter().map(|l| l.compressed_bytes).sum();
    Ok(Footprint {
        layers,
        compressed_bytes,
        efficiency,
        compressed_now,
    })
}

/// Removes the `docker save` output however the measurement ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn save_and_compress(
    docker: &Docker,
    tag: &str,
    image: &ImageInfo,
    cache: &Cache,
) -> Result<(ImageFacts, usize)> {
    let saved = TempFile(
        cache
            .dir
            .join("tmp")
            .join(format!("save-{}.tar", std::process::id())),
    );
    docker.save(tag, &saved.0)?;
    let archive = SavedImage::open(&saved.0)?;
    if archive.diff_ids != image.layers {
        bail!("docker save of {tag} does not match its inspect output (was it rebuilt meanwhile?)");
    }

    let todo: Vec<usize> = (0..archive.diff_ids.len())
        .filter(|&i| cache.layer(&archive.diff_ids[i]).is_none())
        .collect();
    // The same diff ID can appear twice in one image (two identical layers): compress it once.
    let mut seen = std::collections::HashSet::new();
    let todo: Vec<usize> = todo
        .into_iter()
        .filter(|&i| seen.insert(archive.diff_ids[i].clone()))
        .collect();
    let total: u64 = todo.iter().map(|&i| archive.layer_spans[i].1).sum();
    let bar = crate::ui::progress_bar(
        total,
        &format!("compressing {} layer(s) of {tag}", todo.len()),
    );

    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(todo.len().max(1));
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&i) = todo.get(k) else { return Ok(()) };
                        let (offset, len) = archive.layer_spans[i];
                        compress_layer(&saved.0, offset, len, &archive.diff_ids[i], cache, &bar)?;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow!("a compression thread panicked"))??;
        }
        Ok(())
    })?;
    bar.finish_and_clear();

    let facts = ImageFacts {
        layers: archive
            .diff_ids
            .iter()
            .cloned()
            .zip(archive.created_by)
            .collect(),
    };
    write_atomic(&cache.image_json(&image.id), &serde_json::to_vec(&facts)?)?;
    Ok((facts, todo.len()))
}

/// Compresses one layer tar (a byte range of the saved image) into the cache, listing its entries on the way.
fn compress_layer(
    saved: &Path,
    offset: u64,
    len: u64,
    diff_id: &str,
    cache: &Cache,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let mut file = File::open(saved)?;
    file.seek(SeekFrom::Start(offset))?;
    let gz_path = cache.layer_gz(diff_id);
    let partial = gz_path.with_extension(format!("partial-{}", std::process::id()));
    let out = io::BufWriter::new(
        File::create(&partial).with_context(|| format!("creating {}", partial.display()))?,
    );
    let (entries, compressed) = compress_tar(BufReader::new(file).take(len), out, bar)
        .with_context(|| format!("compressing layer {diff_id}"))?;
    std::fs::rename(&partial, &gz_path)?;
    let facts = LayerFacts {
        tar_bytes: len,
        compressed_bytes: compressed,
        entries,
    };
    write_atomic(&cache.layer_json(diff_id), &serde_json::to_vec(&facts)?)
}

/// gzips a tar stream into `out` and lists its entries in the same pass; returns the entries and the
/// compressed size.
pub fn compress_tar<R: Read, W: Write>(
    tar_stream: R,
    out: W,
    bar: &indicatif::ProgressBar,
) -> Result<(Vec<RawEntry>, u64)> {
    let counted = CountingWriter {
        inner: out,
        count: 0,
    };
    let encoder = GzEncoder::new(counted, Compression::new(LEVEL));
    let mut archive = tar::Archive::new(Tee {
        inner: tar_stream,
        copy: encoder,
        bar,
    });
    let mut entries = Vec::new();
    for entry in archive.entries()? {
        let entry = entry?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let is_dir = entry.header().entry_type().is_dir();
        entries.push((path, is_dir, entry.size()));
    }
    // tar stops at the end-of-archive marker; the padding after it is part of the layer too.
    let mut tee = archive.into_inner();
    io::copy(&mut tee, &mut io::sink())?;
    let counted = tee.copy.finish()?;
    let mut inner = counted.inner;
    inner.flush()?;
    Ok((entries, counted.count))
}

/// A reader that writes everything read through it into `copy`.
struct Tee<'b, R, W> {
    inner: R,
    copy: W,
    bar: &'b indicatif::ProgressBar,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The parts of a `docker save` archive we need: where each layer tar lies, its diff ID, its command.
struct SavedImage {
    diff_ids: Vec<String>,
    /// (byte offset, length) of each layer tar inside the saved archive, bottom first.
    layer_spans: Vec<(u64, u64)>,
    created_by: Vec<String>,
}

impl SavedImage {
    fn open(path: &Path) -> Result<SavedImage> {
        let mut archive = tar::Archive::new(File::open(path)?);
        let mut spans = HashMap::new();
        let mut small = HashMap::new();
        for entry in archive.entries_with_seek()? {
            let mut entry = entry?;
            let name = entry.path()?.to_string_lossy().into_owned();
            if name == "manifest.json" || name.ends_with(".json") && entry.size() < 16 << 20 {
                let mut text = String::new();
                entry.read_to_string(&mut text)?;
                small.insert(name.clone(), text);
            }
            spans.insert(name, (entry.raw_file_position(), entry.size()));
        }
        let manifest = small
            .get("manifest.json")
            .context("docker save output has no manifest.json")?;
        let (config_path, layer_paths) = parse_manifest(manifest)?;
        let config = match small.get(&config_path) {
            Some(text) => text.clone(),
            // Newer engines store the config as an OCI blob without a `.json` name.
            None => read_span(
                path,
                *spans
                    .get(&config_path)
                    .context("image config missing from docker save")?,
            )?,
        };
        let (diff_ids, created_by) = parse_config(&config)?;
        if diff_ids.len() != layer_paths.len() {
            bail!(
                "docker save: {} layers in the manifest but {} diff IDs in the config",
                layer_paths.len(),
                diff_ids.len()
            );
        }
        let layer_spans = layer_paths
            .iter()
            .map(|p| {
                spans
                    .get(p)
                    .copied()
                    .with_context(|| format!("layer {p} missing from docker save output"))
            })
            .collect::<Result<_>>()?;
        Ok(SavedImage {
            diff_ids,
            layer_spans,
            created_by,
        })
    }
}

fn read_span(path: &Path, (offset, len): (u64, u64)) -> Result<String> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut text = String::new();
    file.take(len).read_to_string(&mut text)?;
    Ok(text)
}

/// `manifest.json` of `docker save`: the config's path and the layer tars' paths.
fn parse_manifest(json: &str) -> Result<(String, Vec<String>)> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        layers: Vec<String>,
    }
    let mut entries: Vec<Entry> =
        serde_json::from_str(json).context("parsing manifest.json of docker save")?;
    if entries.len() != 1 {
        bail!(
            "docker save manifest.json has {} images, expected 1",
            entries.len()
        );
    }
    let e = entries.remove(0);
    Ok((e.config, e.layers))
}

/// The image config: diff IDs, and for each non-empty layer the command that created it.
fn parse_config(json: &str) -> Result<(Vec<String>, Vec<String>)> {
    #[derive(Deserialize)]
    struct Config {
        rootfs: RootFs,
        #[serde(default)]
        history: Vec<History>,
    }
    #[derive(Deserialize)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct History {
        #[serde(default)]
        created_by: String,
        #[serde(default)]
        comment: String,
        #[serde(default)]
        empty_layer: bool,
    }
    let config: Config = serde_json::from_str(json).context("parsing the image config")?;
    let mut created_by: Vec<String> = config
        .history
        .into_iter()
        .filter(|h| !h.empty_layer)
        .map(|h| match h.created_by.trim() {
            // `docker import` leaves no command, only a comment such as "Imported from -".
            "" => h.comment,
            command => tidy_command(command),
        })
        .collect();
    // An image without history at all still gets one (empty) command per layer.
    created_by.resize(config.rootfs.diff_ids.len(), String::new());
    Ok((config.rootfs.diff_ids, created_by))
}

/// `/bin/sh -c #(nop) COPY file:… in /` → `COPY file:… in /`; `/bin/sh -c cargo build` → `RUN cargo build`.
fn tidy_command(created_by: &str) -> String {
    let c = created_by.trim();
    if let Some(rest) = c.strip_prefix("/bin/sh -c #(nop)") {
        return rest.trim().to_string();
    }
    if let Some(rest) = c.strip_prefix("/bin/sh -c ") {
        return format!("RUN {}", rest.trim());
    }
    c.to_string()
}

/// Measured deploy cost: seconds to gunzip and untar every layer, in order, into an empty directory,
/// applying whiteouts as a node's image store does.
pub fn unpack_seconds(layers: &[Layer], cache: &Cache, scratch_parent: &Path) -> Result<f64> {
    std::fs::create_dir_all(scratch_parent)?;
    let dir = tempfile::Builder::new()
        .prefix("unpack-")
        .tempdir_in(scratch_parent)?;
    let start = Instant::now();
    for layer in layers {
        let gz = File::open(cache.layer_gz(&layer.diff_id))
            .with_context(|| format!("layer {} missing from the cache", layer.diff_id))?;
        unpack_layer(GzDecoder::new(BufReader::new(gz)), dir.path())
            .with_context(|| format!("unpacking layer {}", layer.diff_id))?;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn unpack_layer(tar_stream: impl Read, into: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(tar_stream);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if path.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        }) {
            bail!("layer entry {} escapes the image root", path.display());
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == ".wh..wh..opq" {
            if let Some(parent) = path.parent() {
                clear_dir(&into.join(parent))?;
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let target = into.join(path.with_file_name(hidden));
            match std::fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&target)?,
                Ok(_) => std::fs::remove_file(&target)?,
                Err(_) => {}
            }
            continue;
        }
        // Device nodes and FIFOs cannot be made without privileges everywhere, and carry no bytes.
        if matches!(
            entry.header().entry_type(),
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo
        ) {
            continue;
        }
        entry.unpack_in(into)?;
    }
    Ok(())
}

fn clear_dir(dir: &Path) -> Result<()> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in read {
        let path = entry?.path();
        if path.symlink_metadata()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small, known layer: two files, a directory and a whiteout.
    fn known_layer() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8], kind: tar::EntryType| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, data).unwrap();
        };
        add("app/", b"", tar::EntryType::Directory);
        add(
            "app/eco-service",
            &b"Eco Docker Demo Running \xf0\x9f\x8c\xb1".repeat(500),
            tar::EntryType::Regular,
        );
        add("etc/motd", b"hello\n", tar::EntryType::Regular);
        add("etc/.wh.issue", b"", tar::EntryType::Regular);
        b.into_inner().unwrap()
    }

    #[test]
    fn compressed_size_and_bytes_agree_with_an_independent_gzip() {
        let layer = known_layer();
        let dir = tempfile::tempdir().unwrap();
        let gz_path = dir.path().join("layer.tar.gz");
        let (entries, compressed) = compress_tar(
            &layer[..],
            File::create(&gz_path).unwrap(),
            &indicatif::ProgressBar::hidden(),
        )
        .unwrap();
        assert_eq!(compressed, std::fs::metadata(&gz_path).unwrap().len());
        assert_eq!(
            entries,
            [
                ("app/".to_string(), true, 0),
                ("app/eco-service".to_string(), false, 14_000),
                ("etc/motd".to_string(), false, 6),
                ("etc/.wh.issue".to_string(), false, 0),
            ]
        );

        // GNU gzip must read our stream back to the exact layer bytes, padding included.
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&gz_path)
            .output()
            .expect("gzip is on PATH");
        assert!(out.status.success());
        assert_eq!(out.stdout, layer);

        // And our size must be what GNU gzip at the same level makes of the same bytes, within 1% (zlib and
        // GNU gzip are different implementations of the same deflate and differ by a few bytes at most).
        let raw = dir.path().join("layer.tar");
        std::fs::write(&raw, &layer).unwrap();
        let gnu = std::process::Command::new("gzip")
            .args(["-6", "-n", "-c"])
            .arg(&raw)
            .output()
            .unwrap();
        let gnu_len = gnu.stdout.len() as f64;
        assert!(
            (compressed as f64 - gnu_len).abs() / gnu_len < 0.01,
            "ours {compressed}, gzip -6 {gnu_len}"
        );
    }

    #[test]
    fn unpack_applies_whiteouts_and_opaque_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let layer = |files: &[(&str, &[u8])]| {
            let mut b = tar::Builder::new(Vec::new());
            for (path, data) in files {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, path, *data).unwrap();
            }
            b.into_inner().unwrap()
        };
        unpack_layer(
            &layer(&[("a/keep", b"1"), ("a/gone", b"2"), ("b/old", b"3")])[..],
            dir.path(),
        )
        .unwrap();
        unpack_layer(
            &layer(&[
                ("a/.wh.gone", b""),
                ("b/.wh..wh..opq", b""),
                ("b/new", b"4"),
            ])[..],
            dir.path(),
        )
        .unwrap();
        assert!(dir.path().join("a/keep").exists());
        assert!(!dir.path().join("a/gone").exists());
        assert!(!dir.path().join("b/old").exists());
        assert_eq!(std::fs::read(dir.path().join("b/new")).unwrap(), b"4");
    }

    #[test]
    fn config_gives_commands_of_non_empty_layers_only() {
        let config = r#"{"rootfs":{"type":"layers","diff_ids":["sha256:a","sha256:b"]},"history":[
            {"created_by":"","comment":"Imported from -"},
            {"created_by":"/bin/sh -c #(nop)  ENV X=1","empty_layer":true},
            {"created_by":"/bin/sh -c cargo build --release --offline --locked"}]}"#;
        let (diff_ids, created_by) = parse_config(config).unwrap();
        assert_eq!(diff_ids, ["sha256:a", "sha256:b"]);
        assert_eq!(
            created_by,
            [
                "Imported from -",
                "RUN cargo build --release --offline --locked"
            ]
        );
    }

    #[test]
    fn manifest_must_hold_exactly_one_image() {
        let one = r#"[{"Config":"abc.json","RepoTags":["x:latest"],"Layers":["l1/layer.tar","l2/layer.tar"]}]"#;
        assert_eq!(
            parse_manifest(one).unwrap(),
            (
                "abc.json".into(),
                vec!["l1/layer.tar".into(), "l2/layer.tar".into()]
            )
        );
        assert!(parse_manifest("[]").is_err());
    }

    #[test]
    fn commands_are_shown_as_dockerfile_instructions() {
        assert_eq!(
            tidy_command("/bin/sh -c #(nop) COPY file:abc in /eco-service "),
            "COPY file:abc in /eco-service"
        );
        assert_eq!(tidy_command("/bin/sh -c apk add x"), "RUN apk add x");
        assert_eq!(
            tidy_command("COPY /x /y # buildkit"),
            "COPY /x /y # buildkit"
        );
    }
}
