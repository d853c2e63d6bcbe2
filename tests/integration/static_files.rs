//! The `static` handler through the real binary: files and their headers, conditional and range
//! requests, hostile paths, directories, precompressed files, large and slow downloads, and a
//! root that cannot be served.

use crate::util::{TempDir, TestServer, read_response, read_response_head, rss_kib, run_tine};
use std::io::{Read, Write};
use std::path::Path;

/// A site in a temp dir, and a server for it with one worker of `threads` threads.
struct Site {
    dir: TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = TempDir::new();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("index.html"), "<h1>home</h1>\n").unwrap();
        std::fs::write(root.join("hello.txt"), "hello, world\n").unwrap();
        std::fs::write(root.join("docs/a b.css"), "p{}").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "top secret").unwrap();
        Site { dir }
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }

    fn serve(&self, threads: usize, app: &str) -> TestServer {
        TestServer::builder(format!("workers = 1\nthreads = {threads}"))
            .tables(&format!(
                "[app]\nhandler = \"static\"\nroot = \"{}\"\n{app}",
                self.root().display()
            ))
            .start()
    }
}

fn get_with(server: &TestServer, target: &str, headers: &str) -> crate::util::Response {
    server.request(&format!(
        "GET {target} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"
    ))
}

#[test]
fn serves_files_with_type_length_and_validators() {
    let site = Site::new();
    let server = site.serve(2, "cache_control = \"public, max-age=60\"\n");
    let response = server.get("/hello.txt");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello, world\n");
    assert_eq!(
        response.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.header("Content-Length"), Some("13"));
    assert_eq!(response.header("Accept-Ranges"), Some("bytes"));
    assert_eq!(response.header("Cache-Control"), Some("public, max-age=60"));
    assert!(response.header("ETag").is_some_and(|e| e.starts_with('"')));
    assert!(
        response
            .header("Last-Modified")
            .is_some_and(|d| d.ends_with(" GMT"))
    );
    let css = server.get("/docs/a%20b.css");
    assert_eq!(css.text(), "p{}");
    assert_eq!(css.header("Content-Type"), Some("text/css; charset=utf-8"));
    assert_eq!(server.get("/nope.txt").status, 404);
    let post = server.request(
        "POST /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(post.status, 405);
    assert_eq!(post.header("Allow"), Some("GET, HEAD"));
}

#[test]
fn dotfiles_are_not_served_and_every_answer_says_nosniff() {
    let site = Site::new();
    let root = site.root();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::create_dir_all(root.join(".well-known")).unwrap();
    std::fs::write(root.join(".git/config"), "[core]").unwrap();
    std::fs::write(root.join(".env"), "SECRET=1").unwrap();
    std::fs::write(root.join("docs/.htpasswd"), "u:p").unwrap();
    std::fs::write(root.join(".well-known/security.txt"), "Contact: x").unwrap();
    let server = site.serve(2, "");
    for target in [
        "/.git/config",
        "/.env",
        "/docs/.htpasswd",
        "/%2Eenv",
        "/.git",
    ] {
        let response = server.get(target);
        assert_eq!(response.status, 404, "{target}");
        assert_eq!(response.header("X-Content-Type-Options"), Some("nosniff"));
    }
    for (target, status) in [
        ("/.well-known/security.txt", 200),
        ("/hello.txt", 200),
        ("/docs", 301),
    ] {
        let response = server.get(target);
        assert_eq!(response.status, status, "{target}");
        assert_eq!(response.header("X-Content-Type-Options"), Some("nosniff"));
    }
    drop(server);
    let served = site.serve(2, "dotfiles = true\n");
    assert_eq!(served.get("/.env").text(), "SECRET=1");
    assert_eq!(served.get("/docs/.htpasswd").status, 200);
}

#[test]
fn keep_alive_continues_after_file_bodies_and_head_sends_no_body() {
    let site = Site::new();
    let server = site.serve(2, "");
    let mut stream = server.connect();
    for _ in 0..3 {
        stream
            .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut stream).unwrap().text(), "hello, world\n");
    }
    stream
        .write_all(b"HEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_response_head(&mut stream).unwrap();
    assert_eq!(head.header("Content-Length"), Some("13"));
    // Pipelined after the HEAD: its answer comes straight after the head above.
    stream
        .write_all(b"GET /docs/a%20b.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().text(), "p{}");
}

#[test]
fn conditional_requests_get_304_and_412() {
    let site = Site::new();
    let server = site.serve(2, "");
    let first = server.get("/hello.txt");
    let etag = first.header("ETag").unwrap().to_owned();
    let modified = first.header("Last-Modified").unwrap().to_owned();

    let cached = get_with(&server, "/hello.txt", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    assert_eq!(cached.header("ETag"), Some(etag.as_str()));
    let by_date = get_with(
        &server,
        "/hello.txt",
        &format!("If-Modified-Since: {modified}\r\n"),
    );
    assert_eq!(by_date.status, 304);
    // If-None-Match wins over If-Modified-Since.
    let both = get_with(
        &server,
        "/hello.txt",
        &format!("If-None-Match: \"old\"\r\nIf-Modified-Since: {modified}\r\n"),
    );
    assert_eq!(both.status, 200);
    assert_eq!(
        get_with(&server, "/hello.txt", "If-Match: \"old\"\r\n").status,
        412
    );
    assert_eq!(
        get_with(
            &server,
            "/hello.txt",
            "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
        )
        .status,
        412
    );
}

#[test]
fn ranges_get_206_or_416() {
    let site = Site::new();
    let server = site.serve(2, "");
    let part = get_with(&server, "/hello.txt", "Range: bytes=7-11\r\n");
    assert_eq!(part.status, 206);
    assert_eq!(part.text(), "world");
    assert_eq!(part.header("Content-Range"), Some("bytes 7-11/13"));
    assert_eq!(part.header("Content-Length"), Some("5"));
    let tail = get_with(&server, "/hello.txt", "Range: bytes=-6\r\n");
    assert_eq!(tail.text(), "world\n");
    let unsatisfiable = get_with(&server, "/hello.txt", "Range: bytes=100-\r\n");
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(unsatisfiable.header("Content-Range"), Some("bytes */13"));
    let several = get_with(&server, "/hello.txt", "Range: bytes=0-1, 4-5\r\n");
    assert_eq!(several.status, 200);
    assert_eq!(several.text(), "hello, world\n");
}

#[test]
fn hostile_paths_never_leave_the_root() {
    let site = Site::new();
    std::os::unix::fs::symlink(site.dir.path().join("secret.txt"), site.root().join("link"))
        .unwrap();
    std::os::unix::fs::symlink(site.dir.path(), site.root().join("up")).unwrap();
    let server = site.serve(2, "");
    for target in [
        "/../secret.txt",
        "/docs/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/docs/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/docs%2f..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/..\\secret.txt",
        "/hello.txt%00",
        "/link",
        "/up/secret.txt",
        "/up/",
    ] {
        let response = get_with(&server, target, "");
        // Some of these the HTTP decoder refuses (400) before the handler sees them; either
        // way no byte of the secret comes back.
        assert!(
            response.status == 404 || response.status == 400,
            "{target}: {}",
            response.status
        );
        assert!(!response.text().contains("secret"), "{target}");
    }
    let follow = site.serve(2, "follow_symlinks = true\n");
    assert_eq!(follow.get("/link").text(), "top secret");
}

#[test]
fn directories_redirect_and_serve_index_or_listing() {
    let site = Site::new();
    let server = site.serve(2, "");
    let redirect = server.get("/docs?page=2");
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("Location"), Some("/docs/?page=2"));
    assert_eq!(server.get("/").text(), "<h1>home</h1>\n");
    assert_eq!(server.get("/docs/").status, 404, "no index, no listing");

    std::fs::write(site.root().join("docs/<i>.txt"), "x").unwrap();
    let listing = site.serve(2, "listing = true\n");
    let page = listing.get("/docs/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.text();
    assert!(html.contains("href=\"./a%20b.css\""), "{html}");
    assert!(html.contains("&lt;i&gt;.txt"), "{html}");
    assert!(!html.contains("<i>"), "{html}");
}

#[test]
fn precompressed_files_are_chosen_by_accept_encoding() {
    let site = Site::new();
    std::fs::write(site.root().join("hello.txt.gz"), "gzip bytes").unwrap();
    let server = site.serve(2, "precompressed = true\n");
    let gz = get_with(&server, "/hello.txt", "Accept-Encoding: gzip, deflate\r\n");
    assert_eq!(gz.text(), "gzip bytes");
    assert_eq!(gz.header("Content-Encoding"), Some("gzip"));
    assert_eq!(gz.header("Vary"), Some("Accept-Encoding"));
    assert_eq!(gz.header("Content-Type"), Some("text/plain; charset=utf-8"));
    let plain = get_with(&server, "/hello.txt", "Accept-Encoding: br\r\n");
    assert_eq!(plain.text(), "hello, world\n");
    assert_eq!(plain.header("Content-Encoding"), None);
    assert_eq!(plain.header("Vary"), Some("Accept-Encoding"));
}

/// Bytes that differ from position to position, so a shifted or repeated piece shows.
fn pattern(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

#[test]
fn a_download_matches_the_file_byte_for_byte_over_tcp_and_unix_sockets() {
    let site = Site::new();
    let data = pattern(3 << 20);
    std::fs::write(site.root().join("data.bin"), &data).unwrap();
    let socket = site.dir.path().join("tine.sock");
    let server = TestServer::builder("workers = 1")
        .bind(&format!("unix:{}", socket.display()))
        .tables(&format!(
            "[app]\nhandler = \"static\"\nroot = \"{}\"",
            site.root().display()
        ))
        .start();
    let response = server.get("/data.bin");
    assert_eq!(response.header("Content-Length"), Some("3145728"));
    assert!(
        response.body == data,
        "the TCP download differs from the file"
    );
    let part = get_with(&server, "/data.bin", "Range: bytes=1000000-1999999\r\n");
    assert!(part.body == data[1_000_000..2_000_000], "the range differs");

    let mut unix = crate::util::connect_unix(&socket);
    unix.write_all(b"GET /data.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    unix.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(raw.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(raw[split..] == data[..], "the Unix socket download differs");
}

#[test]
fn a_slow_100_mib_download_holds_no_thread_and_others_are_served_meanwhile() {
    let site = Site::new();
    let size: u64 = 100 << 20;
    // Sparse: the file costs no disk, and reads as zeros.
    std::fs::File::create(site.root().join("big.bin"))
        .unwrap()
        .set_len(size)
        .unwrap();
    // One pool thread: if the download held it, nothing else could be answered.
    let server = site.serve(1, "");
    let worker = server.workers()[0];
    let mut slow = crate::util::connect(server.addr);
    slow.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let head = read_response_head(&mut slow).unwrap();
    assert_eq!(head.header("Content-Length"), Some("104857600"));
    let mut buf = vec![0u8; 64 * 1024];
    let mut received = 0u64;
    // Read a little at a time, asking for another file in between: with the one pool thread
    // held by the download, none of these could be answered (each `get` fails after the read
    // timeout, `WAIT`, a hang detector).
    for _ in 0..10 {
        let n = slow.read(&mut buf).unwrap();
        assert!(buf[..n].iter().all(|&b| b == 0));
        received += n as u64;
        let other = server.get("/hello.txt");
        assert_eq!(other.text(), "hello, world\n");
    }
    assert!(received < size, "the download is still under way");
    let rss = rss_kib(worker);
    assert!(
        rss < 64 * 1024,
        "the worker holds {rss} KiB while sending a 100 MiB file"
    );
    // Now take the rest at full speed: all of it arrives, and the worker is the same.
    loop {
        match slow.read(&mut buf).unwrap() {
            0 => break,
            n => {
                assert!(buf[..n].iter().all(|&b| b == 0));
                received += n as u64;
            }
        }
    }
    assert_eq!(received, size);
    assert_eq!(server.workers(), vec![worker]);
}

#[test]
fn a_root_that_cannot_be_served_stops_tine_with_exit_70_and_says_why() {
    let dir = TempDir::new();
    for (root, why) in [
        ("no-such-dir", "no such file or directory"),
        ("afile", "is not a directory"),
    ] {
        std::fs::write(dir.path().join("afile"), "x").unwrap();
        let config = dir.write(
            "tine.toml",
            &format!("[server]\nworkers = 2\n[app]\nhandler = \"static\"\nroot = \"{root}\"\n"),
        );
        let (status, _, stderr) = run_tine(
            &dir,
            &["-c", config.to_str().unwrap(), "--bind", "127.0.0.1:0"],
        );
        assert_eq!(status.code(), Some(70), "{stderr}");
        assert!(
            stderr.contains("could not build the static application: static root")
                && stderr.contains(root)
                && stderr.contains(why),
            "{stderr}"
        );
    }
}

#[test]
fn the_bundled_static_config_serves_public() {
    // The file as it is, from the repository's root as the README runs it; the command line
    // moves its listener to a port the kernel picks, and asks for one worker.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let server = TestServer::builder("")
        .config_file(&repo.join("config/static.toml"))
        .arg("--workers")
        .arg("1")
        .arg("--chdir")
        .arg(repo)
        .start();
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.body,
        std::fs::read(repo.join("public/index.html")).unwrap()
    );
    assert_eq!(page.header("Cache-Control"), Some("public, max-age=3600"));
}
