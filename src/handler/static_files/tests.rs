//! Unit tests of the static handler over a scratch directory: what each request is answered.

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::handler::Body;

struct Site {
    dir: PathBuf,
}

impl Site {
    fn new() -> Site {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tine-static-unit-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/docs/guide")).unwrap();
        std::fs::write(dir.join("root/index.html"), "<h1>home</h1>\n").unwrap();
        std::fs::write(dir.join("root/hello.txt"), "hello, world\n").unwrap();
        std::fs::write(dir.join("root/docs/guide/page.css"), "p{}").unwrap();
        std::fs::write(dir.join("root/empty.bin"), "").unwrap();
        std::fs::write(dir.join("secret.txt"), "secret").unwrap();
        Site { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    fn files(&self, tweak: impl FnOnce(&mut StaticOptions)) -> StaticFiles {
        let mut options = StaticOptions {
            root: self.root(),
            ..StaticOptions::default()
        };
        tweak(&mut options);
        StaticFiles::new(options).unwrap()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn get(files: &StaticFiles, target: &str, headers: &[(&str, &str)]) -> Response {
    request(files, "GET", target, headers)
}

fn request(files: &StaticFiles, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
    let mut builder = Request::builder(method, target);
    for (name, value) in headers {
        builder = builder.header(name, *value);
    }
    files.handle(builder.build())
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .header(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The bytes the response's body stands for.
fn body(response: &Response) -> Vec<u8> {
    match response.body() {
        Body::Bytes(bytes) => bytes.clone(),
        Body::File(region) => {
            let mut out = vec![0; region.len() as usize];
            region
                .file()
                .read_exact_at(&mut out, region.offset())
                .unwrap();
            out
        }
        Body::Stream(_) | Body::SizedStream(..) => panic!("the static handler never streams"),
    }
}

#[test]
fn a_root_that_is_missing_or_not_a_directory_fails_to_build() {
    let site = Site::new();
    let missing = StaticFiles::new(StaticOptions {
        root: site.dir.join("nope"),
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        missing.to_string().starts_with("static root \"")
            && missing
                .to_string()
                .ends_with("nope\": no such file or directory"),
        "{missing}"
    );
    let file = StaticFiles::new(StaticOptions {
        root: site.dir.join("secret.txt"),
        ..Default::default()
    })
    .unwrap_err();
    assert!(file.to_string().ends_with("is not a directory"), "{file}");
    for bad in ["", "..", "a/b", "a\0"] {
        let err = StaticFiles::new(StaticOptions {
            root: site.root(),
            index: vec![bad.to_owned()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, StaticError::IndexName(_)), "{bad:?}");
    }
    let err = StaticFiles::new(StaticOptions {
        root: site.root(),
        cache_control: Some("a\r\nb".to_owned()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, StaticError::CacheControl(_)));
}

#[test]
fn serves_a_file_with_its_metadata() {
    let site = Site::new();
    let files = site.files(|_| {});
    let response = get(&files, "/hello.txt", &[]);
    assert_eq!(response.status(), 200);
    assert_eq!(body(&response), b"hello, world\n");
    assert_eq!(
        header(&response, "Content-Type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(header(&response, "Accept-Ranges").as_deref(), Some("bytes"));
    let etag = header(&response, "ETag").unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"));
    let modified = header(&response, "Last-Modified").unwrap();
    assert!(parse_http_date(modified.as_bytes()).is_some(), "{modified}");
    assert_eq!(header(&response, "Cache-Control"), None);
    assert_eq!(header(&response, "Vary"), None);

    let nested = get(&files, "/docs/guide/page.css", &[]);
    assert_eq!(body(&nested), b"p{}");
    assert_eq!(
        header(&nested, "Content-Type").as_deref(),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(get(&files, "/empty.bin", &[]).body().len(), Some(0));
}

#[test]
fn the_etag_changes_with_the_file() {
    let site = Site::new();
    let files = site.files(|_| {});
    let before = header(&get(&files, "/hello.txt", &[]), "ETag");
    std::fs::write(site.root().join("hello.txt"), "changed, and longer\n").unwrap();
    let after = header(&get(&files, "/hello.txt", &[]), "ETag");
    assert_ne!(before, after);
}

#[test]
fn head_describes_the_file() {
    let site = Site::new();
    let files = site.files(|_| {});
    let response = request(&files, "HEAD", "/hello.txt", &[]);
    assert_eq!(response.status(), 200);
    // The body stays a file region: the worker sends its length and no bytes.
    assert_eq!(response.body().len(), Some(13));
}

#[test]
fn other_methods_are_405_with_allow() {
    let site = Site::new();
    let files = site.files(|_| {});
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get"] {
        let response = request(&files, method, "/hello.txt", &[]);
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(header(&response, "Allow").as_deref(), Some("GET, HEAD"));
    }
}

#[test]
fn hostile_and_missing_paths_are_404() {
    let site = Site::new();
    std::os::unix::fs::symlink(site.dir.join("secret.txt"), site.root().join("link")).unwrap();
    let files = site.files(|_| {});
    for target in [
        "/missing",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/docs/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/docs%2f..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/hello.txt%00.html",
        "/link",
        "/hello.txt/",
        "/hello.txt/x",
        "/%zz",
        "*",
    ] {
        let response = get(&files, target, &[]);
        assert_eq!(response.status(), 404, "{target}");
        assert_eq!(body(&response), b"404 Not Found\n", "{target}");
    }
    let following = site.files(|o| o.follow_symlinks = true);
    assert_eq!(body(&get(&following, "/link", &[])), b"secret");
    // Following links still never climbs with "..".
    assert_eq!(get(&following, "/../secret.txt", &[]).status(), 404);
}

#[test]
fn directories_redirect_then_serve_their_index() {
    let site = Site::new();
    let files = site.files(|_| {});
    let response = get(&files, "/docs?x=1", &[]);
    assert_eq!(response.status(), 301);
    assert_eq!(header(&response, "Location").as_deref(), Some("/docs/?x=1"));
    let response = get(&files, "//evil.example//docs", &[]);
    assert_eq!(response.status(), 404, "not a directory here");
    std::fs::create_dir_all(site.root().join("evil.example")).unwrap();
    let response = get(&files, "//evil.example", &[]);
    assert_eq!(
        header(&response, "Location").as_deref(),
        Some("/evil.example/"),
        "never a protocol-relative redirect"
    );

    let home = get(&files, "/", &[]);
    assert_eq!(home.status(), 200);
    assert_eq!(body(&home), b"<h1>home</h1>\n");
    assert_eq!(
        header(&home, "Content-Type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    // No index and no listing: 404.
    assert_eq!(get(&files, "/docs/", &[]).status(), 404);

    let custom = site.files(|o| o.index = vec!["missing.htm".into(), "page.css".into()]);
    assert_eq!(body(&get(&custom, "/docs/guide/", &[])), b"p{}");
}

#[test]
fn listings_only_when_enabled_and_escaped() {
    let site = Site::new();
    std::fs::write(site.root().join("docs/<script>.txt"), "x").unwrap();
    let files = site.files(|o| o.listing = true);
    let response = get(&files, "/docs/", &[]);
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "Content-Type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let html = String::from_utf8(body(&response)).unwrap();
    assert!(html.contains("&lt;script&gt;.txt"), "{html}");
    assert!(html.contains("href=\"./%3Cscript%3E.txt\""), "{html}");
    assert!(html.contains("href=\"./guide/\""), "{html}");
    assert!(!html.contains("<script>"));
    // The index still wins over the listing.
    assert_eq!(body(&get(&files, "/", &[])), b"<h1>home</h1>\n");
}

#[test]
fn conditional_requests() {
    let site = Site::new();
    let files = site.files(|o| o.cache_control = Some("max-age=60".into()));
    let first = get(&files, "/hello.txt", &[]);
    let etag = header(&first, "ETag").unwrap();
    let modified = header(&first, "Last-Modified").unwrap();
    assert_eq!(
        header(&first, "Cache-Control").as_deref(),
        Some("max-age=60")
    );

    let not_modified = get(&files, "/hello.txt", &[("If-None-Match", &etag)]);
    assert_eq!(not_modified.status(), 304);
    assert_eq!(header(&not_modified, "ETag"), Some(etag.clone()));
    assert_eq!(
        header(&not_modified, "Cache-Control").as_deref(),
        Some("max-age=60")
    );
    assert_eq!(
        get(&files, "/hello.txt", &[("If-Modified-Since", &modified)]).status(),
        304
    );
    assert_eq!(
        request(&files, "HEAD", "/hello.txt", &[("If-None-Match", "*")]).status(),
        304
    );
    assert_eq!(
        get(&files, "/hello.txt", &[("If-None-Match", "\"other\"")]).status(),
        200
    );
    assert_eq!(
        get(&files, "/hello.txt", &[("If-Match", "\"other\"")]).status(),
        412
    );
    assert_eq!(
        get(&files, "/hello.txt", &[("If-Match", &etag)]).status(),
        200
    );
    assert_eq!(
        get(
            &files,
            "/hello.txt",
            &[("If-Unmodified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")]
        )
        .status(),
        412
    );
}

#[test]
fn ranges() {
    let site = Site::new();
    let files = site.files(|_| {});
    let part = get(&files, "/hello.txt", &[("Range", "bytes=7-11")]);
    assert_eq!(part.status(), 206);
    assert_eq!(body(&part), b"world");
    assert_eq!(
        header(&part, "Content-Range").as_deref(),
        Some("bytes 7-11/13")
    );
    let suffix = get(&files, "/hello.txt", &[("Range", "bytes=-6")]);
    assert_eq!(body(&suffix), b"world\n");

    let beyond = get(&files, "/hello.txt", &[("Range", "bytes=13-")]);
    assert_eq!(beyond.status(), 416);
    assert_eq!(
        header(&beyond, "Content-Range").as_deref(),
        Some("bytes */13")
    );

    let several = get(&files, "/hello.txt", &[("Range", "bytes=0-1,3-4")]);
    assert_eq!(several.status(), 200);
    assert_eq!(body(&several), b"hello, world\n");

    // HEAD ignores Range, as does a failed If-Range.
    let head = request(&files, "HEAD", "/hello.txt", &[("Range", "bytes=0-1")]);
    assert_eq!((head.status(), head.body().len()), (200, Some(13)));
    let etag = header(&get(&files, "/hello.txt", &[]), "ETag").unwrap();
    let stale = get(
        &files,
        "/hello.txt",
        &[("Range", "bytes=0-4"), ("If-Range", "\"stale\"")],
    );
    assert_eq!(stale.status(), 200);
    let fresh = get(
        &files,
        "/hello.txt",
        &[("Range", "bytes=0-4"), ("If-Range", &etag)],
    );
    assert_eq!((fresh.status(), body(&fresh)), (206, b"hello".to_vec()));
    // Preconditions come before ranges.
    let not_modified = get(
        &files,
        "/hello.txt",
        &[("Range", "bytes=0-4"), ("If-None-Match", &etag)],
    );
    assert_eq!(not_modified.status(), 304);
}

#[test]
fn precompressed_variants_follow_accept_encoding() {
    let site = Site::new();
    std::fs::write(site.root().join("hello.txt.gz"), "GZ").unwrap();
    std::fs::write(site.root().join("hello.txt.br"), "BR").unwrap();
    std::fs::write(site.root().join("index.html.gz"), "GZINDEX").unwrap();
    let files = site.files(|o| o.precompressed = true);
    let table: &[(&str, &[u8], Option<&str>)] = &[
        ("gzip, deflate, br", b"BR", Some("br")),
        ("gzip", b"GZ", Some("gzip")),
        ("x-gzip", b"GZ", Some("gzip")),
        ("br;q=0.5, gzip;q=0.8", b"GZ", Some("gzip")),
        ("br;q=0, gzip;q=0", b"hello, world\n", None),
        ("*", b"BR", Some("br")),
        ("*;q=0.1, br;q=0", b"GZ", Some("gzip")),
        ("identity", b"hello, world\n", None),
        ("", b"hello, world\n", None),
    ];
    for (accept, want, encoding) in table {
        let response = get(&files, "/hello.txt", &[("Accept-Encoding", accept)]);
        assert_eq!(body(&response), *want, "{accept}");
        assert_eq!(
            header(&response, "Content-Encoding").as_deref(),
            *encoding,
            "{accept}"
        );
        assert_eq!(
            header(&response, "Content-Type").as_deref(),
            Some("text/plain; charset=utf-8"),
            "the type of the original, {accept}"
        );
        assert_eq!(
            header(&response, "Vary").as_deref(),
            Some("Accept-Encoding")
        );
    }
    let index = get(&files, "/", &[("Accept-Encoding", "gzip")]);
    assert_eq!(body(&index), b"GZINDEX");
    // Variants have their own entity tags.
    let plain = header(&get(&files, "/hello.txt", &[]), "ETag");
    let gz = header(
        &get(&files, "/hello.txt", &[("Accept-Encoding", "gzip")]),
        "ETag",
    );
    assert_ne!(plain, gz);
    // Without the option, the variants are only files like any other.
    let off = site.files(|_| {});
    let response = get(&off, "/hello.txt", &[("Accept-Encoding", "gzip")]);
    assert_eq!(body(&response), b"hello, world\n");
    assert_eq!(header(&response, "Vary"), None);
}

#[test]
fn qualities() {
    assert_eq!(parse_quality("1"), Some(1000));
    assert_eq!(parse_quality("1.000"), Some(1000));
    assert_eq!(parse_quality("0.5"), Some(500));
    assert_eq!(parse_quality("0.05"), Some(50));
    assert_eq!(parse_quality("0"), Some(0));
    for bad in ["1.5", "2", "0.1234", "-1", "x", "", "0.x"] {
        assert_eq!(parse_quality(bad), None, "{bad:?}");
    }
}

#[test]
fn dotfiles_are_404_unless_enabled_but_well_known_is_served() {
    let site = Site::new();
    let root = site.root();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::create_dir_all(root.join(".well-known/.private")).unwrap();
    std::fs::create_dir_all(root.join("docs/.well-known")).unwrap();
    std::fs::write(root.join(".git/config"), "[core]").unwrap();
    std::fs::write(root.join(".env"), "SECRET=1").unwrap();
    std::fs::write(root.join("docs/.htpasswd"), "u:p").unwrap();
    std::fs::write(root.join("docs/.well-known/x"), "x").unwrap();
    std::fs::write(root.join(".well-known/security.txt"), "Contact: x").unwrap();
    std::fs::write(root.join(".well-known/.private/key"), "k").unwrap();
    let hidden = [
        "/.git/config",
        "/.git",
        "/.git/",
        "/.env",
        "/%2eenv",
        "/docs/.htpasswd",
        "/docs/.well-known/x",
        "/.well-known/.private/key",
    ];
    let files = site.files(|o| o.listing = true);
    for target in hidden {
        let response = get(&files, target, &[]);
        assert_eq!(response.status(), 404, "{target}");
        assert_eq!(body(&response), b"404 Not Found\n", "{target}");
    }
    let acme = get(&files, "/.well-known/security.txt", &[]);
    assert_eq!((acme.status(), body(&acme)), (200, b"Contact: x".to_vec()));
    let listing = String::from_utf8(body(&get(&files, "/", &[("X", "y")]))).unwrap();
    assert_eq!(listing, "<h1>home</h1>\n", "the index wins");
    std::fs::remove_file(root.join("index.html")).unwrap();
    let listing = String::from_utf8(body(&get(&files, "/", &[]))).unwrap();
    assert!(listing.contains(".well-known/"), "{listing}");
    assert!(
        !listing.contains(".git") && !listing.contains(".env"),
        "{listing}"
    );
    let docs = String::from_utf8(body(&get(&files, "/docs/", &[]))).unwrap();
    assert!(
        !docs.contains(".htpasswd") && !docs.contains(".well-known"),
        "{docs}"
    );

    let served = site.files(|o| {
        o.listing = true;
        o.dotfiles = true;
    });
    for target in hidden
        .iter()
        .filter(|t| !t.ends_with(".git") && !t.ends_with('/'))
    {
        assert_eq!(get(&served, target, &[]).status(), 200, "{target}");
    }
    assert_eq!(get(&served, "/.git", &[]).status(), 301);
    let listing = String::from_utf8(body(&get(&served, "/", &[]))).unwrap();
    assert!(
        listing.contains(".git/") && listing.contains(".env"),
        "{listing}"
    );
}

#[test]
fn every_answer_says_nosniff() {
    let site = Site::new();
    let files = site.files(|o| o.listing = true);
    let etag = header(&get(&files, "/hello.txt", &[]), "ETag").unwrap();
    let answers = [
        get(&files, "/hello.txt", &[]),
        get(&files, "/docs/", &[]),
        get(&files, "/docs", &[]),
        get(&files, "/missing", &[]),
        get(&files, "/../secret.txt", &[]),
        request(&files, "POST", "/hello.txt", &[]),
        get(&files, "/hello.txt", &[("If-None-Match", &etag)]),
        get(&files, "/hello.txt", &[("If-Match", "\"other\"")]),
        get(&files, "/hello.txt", &[("Range", "bytes=1-2")]),
        get(&files, "/hello.txt", &[("Range", "bytes=100-")]),
    ];
    let statuses: Vec<u16> = answers.iter().map(Response::status).collect();
    assert_eq!(statuses, [200, 200, 301, 404, 404, 405, 304, 412, 206, 416]);
    for response in &answers {
        assert_eq!(
            header(response, "X-Content-Type-Options").as_deref(),
            Some("nosniff"),
            "{}",
            response.status()
        );
    }
}

#[test]
fn the_etag_is_modification_time_and_size_not_the_inode() {
    let site = Site::new();
    let files = site.files(|_| {});
    let path = site.root().join("hello.txt");
    let meta = std::fs::metadata(&path).unwrap();
    let nanos = meta
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let etag = header(&get(&files, "/hello.txt", &[]), "ETag").unwrap();
    // Exactly these two numbers: nothing else (the inode) is in it.
    assert_eq!(etag, format!("\"{nanos:x}-{:x}\"", meta.len()));
    // Stable: another handler (another worker, a restart) gives the same tag.
    let again = site.files(|_| {});
    assert_eq!(header(&get(&again, "/hello.txt", &[]), "ETag"), Some(etag));
    assert_eq!(entity_tag(0x10, 0x2, Some("br")), "\"10-2-br\"");
}

#[test]
fn open_errors_map_to_404_503_or_500() {
    let path = Path::new("a/b");
    for errno in [
        libc::ENOENT,
        libc::ENOTDIR,
        libc::EACCES,
        libc::EPERM,
        libc::ENAMETOOLONG,
        libc::ELOOP,
    ] {
        let response = failed(&io::Error::from_raw_os_error(errno), path);
        assert_eq!(response.status(), 404, "errno {errno}");
    }
    let outside = io::Error::new(io::ErrorKind::NotFound, "outside the root");
    assert_eq!(failed(&outside, path).status(), 404);
    for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM] {
        let response = failed(&io::Error::from_raw_os_error(errno), path);
        assert_eq!(response.status(), 503, "errno {errno}");
        assert_eq!(header(&response, "Retry-After").as_deref(), Some("1"));
    }
    for errno in [libc::EIO, libc::ESTALE, libc::EOVERFLOW] {
        let response = failed(&io::Error::from_raw_os_error(errno), path);
        assert_eq!(response.status(), 500, "errno {errno}");
    }
}

#[test]
fn a_socket_under_the_root_is_404_and_left_out_of_listings() {
    // open(2) of a Unix socket fails with ENXIO, before the handler can see what it is: it is
    // still not something this handler serves, like a FIFO or a device.
    let site = Site::new();
    let _socket =
        std::os::unix::net::UnixListener::bind(site.root().join("docs/app.sock")).unwrap();
    let files = site.files(|o| o.listing = true);
    let response = get(&files, "/docs/app.sock", &[]);
    assert_eq!(response.status(), 404);
    assert_eq!(body(&response), b"404 Not Found\n");
    let listing = get(&files, "/docs/", &[]);
    assert_eq!(listing.status(), 200);
    let html = String::from_utf8(body(&listing)).unwrap();
    assert!(
        html.contains("guide/") && !html.contains("app.sock"),
        "{html}"
    );
}
