//! Against real git repositories made in temporary directories.

use offshoot_git::{CommitFiles, GitError, Mirror};
use offshoot_template::repo::{self, Source};
use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn write(dir: &Path, path: &str, body: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, body).expect("write");
}

fn source_repo(dir: &Path) {
    git(dir, &["init", "-q"]);
    write(dir, ".release.yaml", "application_template: .release/application_template.yaml\n");
    write(dir, ".release/application_template.yaml", "app: demo\nservices:\n- name: web\n  image: busybox:stable\n");
    write(dir, "web/Dockerfile", "FROM busybox:stable\n");
    write(dir, "web/run.sh", "#!/bin/sh\necho hi\n");
    write(dir, "api/main.txt", "api v1\n");
    std::os::unix::fs::symlink("run.sh", dir.join("web/start")).expect("symlink");
    Command::new("chmod").args(["+x", dir.join("web/run.sh").to_str().expect("utf-8")]).status().expect("chmod");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "first"]);
}

#[test]
fn mirror_resolve_read_and_archive() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    source_repo(&src);
    let main1 = git(&src, &["rev-parse", "HEAD"]);
    git(&src, &["checkout", "-qb", "feature/x"]);
    write(&src, "api/main.txt", "api v2\n");
    git(&src, &["commit", "-qam", "feature"]);
    let feature = git(&src, &["rev-parse", "HEAD"]);
    git(&src, &["checkout", "-q", "main"]);

    let m = Mirror::sync(src.to_str().expect("utf-8"), &tmp.path().join("mirror")).expect("sync");
    assert_eq!(m.branches().expect("branches"), ["feature/x", "main"]);
    assert_eq!(m.default_branch().expect("default").as_deref(), Some("main"));
    assert_eq!(m.resolve("main").expect("resolve").as_deref(), Some(main1.as_str()));
    assert_eq!(m.resolve("feature/x").expect("resolve").as_deref(), Some(feature.as_str()));
    assert_eq!(m.resolve("nope").expect("resolve"), None);

    // Files at a commit, not from a working copy.
    assert_eq!(m.read_file(&main1, "api/main.txt").expect("read"), Some(b"api v1\n".to_vec()));
    assert_eq!(m.read_file(&feature, "./api/main.txt").expect("read"), Some(b"api v2\n".to_vec()));
    assert_eq!(m.read_file(&main1, "api/missing").expect("read"), None);
    assert!(matches!(m.read_file(&main1, "../etc/passwd"), Err(GitError::BadPath { .. })));
    assert!(matches!(m.read_file("0123456789012345678901234567890123456789", "x"), Err(GitError::UnknownCommit { .. })));

    // Tree ids change exactly when the directory changes.
    assert_eq!(m.tree_id(&main1, "web").expect("tree"), m.tree_id(&feature, "web").expect("tree"));
    assert_ne!(m.tree_id(&main1, "api").expect("tree"), m.tree_id(&feature, "api").expect("tree"));
    assert_eq!(m.tree_id(&main1, "nope").expect("tree"), None);

    // The build context: files with modes, symlinks kept.
    let tar_bytes = m.archive(&main1, "web").expect("archive");
    let mut ar = tar::Archive::new(tar_bytes.as_slice());
    let mut entries: Vec<(String, u32, bool)> = ar
        .entries()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            let path = e.path().expect("path").display().to_string();
            (path, e.header().mode().expect("mode"), e.header().entry_type().is_symlink())
        })
        .collect();
    entries.sort();
    assert_eq!(entries, [("Dockerfile".into(), 0o644, false), ("run.sh".into(), 0o755, false), ("start".into(), 0o777, true)]);
    // Under a prefix (a static build's sources, unpacked at the root of its container).
    let tar_bytes = m.archive_under(&main1, "web", "workspace/").expect("archive");
    let mut names: Vec<String> = tar::Archive::new(tar_bytes.as_slice())
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry").path().expect("path").display().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["workspace/Dockerfile", "workspace/run.sh", "workspace/start"]);

    // The application's configuration is found at a commit.
    let files = CommitFiles { mirror: &m, commit: main1.clone() };
    let found = repo::discover(&files, None);
    match found.source {
        Some(Source::Release { template: Some(t), .. }) => {
            assert_eq!(t.1.template.and_then(|t| t.app).map(|a| a.value).as_deref(), Some("demo"))
        }
        other => panic!("expected Release files, got {other:?}"),
    }

    // New commits arrive with a fetch (and with a second sync).
    write(&src, "api/main.txt", "api v3\n");
    git(&src, &["commit", "-qam", "third"]);
    let main2 = git(&src, &["rev-parse", "HEAD"]);
    m.fetch().expect("fetch");
    assert_eq!(m.resolve("main").expect("resolve").as_deref(), Some(main2.as_str()));
    let again = Mirror::sync(src.to_str().expect("utf-8"), &tmp.path().join("mirror")).expect("sync again");
    assert!(again.has_commit(&main2).expect("has"));
}

#[test]
fn a_missing_source_is_a_fetch_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = Mirror::sync(tmp.path().join("nothing-here").to_str().expect("utf-8"), &tmp.path().join("m")).expect_err("no source");
    assert!(matches!(err, GitError::Fetch { .. }), "{err}");
    assert!(!tmp.path().join("m").exists(), "nothing half-made is left");
}

#[test]
fn a_file_or_folder_is_read_whole_within_a_limit() {
    use offshoot_git::{ItemFile, ItemKind, TreeItem};
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    source_repo(&src);
    let head = git(&src, &["rev-parse", "HEAD"]);
    let m = Mirror::sync(src.to_str().expect("utf-8"), &tmp.path().join("mirror")).expect("sync");
    let file = |path: &str, kind, data: &str| ItemFile { path: path.into(), kind, data: data.as_bytes().to_vec() };
    let plain = ItemKind::File { executable: false };

    assert_eq!(m.read_item(&head, "././api/main.txt", 1024).expect("read"), Some(TreeItem::File(file("", plain, "api v1\n"))));
    let web = m.read_item(&head, "web/", 1024).expect("read");
    let want = vec![
        file("Dockerfile", plain, "FROM busybox:stable\n"),
        file("run.sh", ItemKind::File { executable: true }, "#!/bin/sh\necho hi\n"),
        file("start", ItemKind::Symlink, "run.sh"),
    ];
    assert_eq!(web, Some(TreeItem::Dir(want)));
    // The whole repository, as `.`.
    let Some(TreeItem::Dir(all)) = m.read_item(&head, ".", 4096).expect("read") else { panic!("a folder") };
    assert!(all.iter().any(|f| f.path == "api/main.txt") && all.iter().any(|f| f.path == ".release/application_template.yaml"), "{all:?}");
    assert_eq!(m.read_item(&head, "nope/x", 1024).expect("read"), None);
    // Bounded, outside refused.
    let err = m.read_item(&head, "web", 10).expect_err("too large");
    assert!(matches!(err, GitError::TooLarge { limit: 10, .. }), "{err}");
    assert!(matches!(m.read_item(&head, "../etc/passwd", 1024), Err(GitError::BadPath { .. })));
    assert!(matches!(m.read_item(&head, "/etc/passwd", 1024), Err(GitError::BadPath { .. })));
}

#[test]
fn a_pull_request_s_head_is_fetched_from_its_ref_not_from_a_branch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    source_repo(&src);
    // A fork's commit: the base repository keeps it at `refs/pull/7/head` only, as GitHub does.
    git(&src, &["checkout", "-q", "--detach"]);
    write(&src, "api/main.txt", "from the fork\n");
    git(&src, &["commit", "-qam", "fork"]);
    let head = git(&src, &["rev-parse", "HEAD"]);
    git(&src, &["update-ref", "refs/pull/7/head", &head]);
    git(&src, &["checkout", "-q", "main"]);

    let m = Mirror::sync(src.to_str().expect("utf-8"), &tmp.path().join("mirror")).expect("sync");
    assert!(!m.has_commit(&head).expect("has"), "branches and tags only: the fork's commit is not fetched");
    assert_eq!(m.resolve("refs/pull/7/head").expect("resolve"), None);
    m.fetch_pull("refs/pull/7/head").expect("fetch the pull request's head");
    assert_eq!(m.resolve("refs/pull/7/head").expect("resolve").as_deref(), Some(head.as_str()));
    assert_eq!(m.read_file(&head, "api/main.txt").expect("read"), Some(b"from the fork\n".to_vec()));
    // Fetching branches again keeps it; a pull request the repository does not have is an error.
    m.fetch().expect("fetch");
    assert_eq!(m.resolve("refs/pull/7/head").expect("resolve").as_deref(), Some(head.as_str()));
    let e = m.fetch_pull("refs/pull/8/head").expect_err("no such pull request");
    assert!(e.to_string().contains("refs/pull/8/head"), "{e}");
    let e = m.fetch_pull("refs/heads/main").expect_err("not a pull request's head");
    assert!(e.to_string().contains("not a pull request's head"), "{e}");
}
