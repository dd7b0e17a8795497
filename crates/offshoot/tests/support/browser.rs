//! A real browser for the dashboard's tests: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) over WebDriver with fantoccini; screenshots kept in the target directory
//! (`<target>/tmp/dashboard-screenshots/`) and every one checked by axe-core.

use super::{Helper, helper};
use fantoccini::{Client, ClientBuilder, Locator};
use std::time::{Duration, Instant};

pub fn chromedriver() -> Helper {
    helper("chromedriver", &["--port={port}"], "apt-get install chromium chromium-driver; see scripts/services")
}

pub async fn browser(driver: &Helper) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,900"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a browser session")
}

pub fn screenshots() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// A screenshot of the page, kept for review, and axe-core's check of it.
pub async fn shoot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).expect("save screenshot");
    accessible(c, name).await;
}

/// Where `scripts/services` installs axe-core (npm).
pub const AXE: &str = "/opt/offshoot-npm/node_modules/axe-core/axe.min.js";

/// axe-core run on the page as it is: no serious or critical violation.
pub async fn accessible(c: &Client, what: &str) {
    let axe = std::fs::read_to_string(AXE).unwrap_or_else(|e| panic!("{AXE}: {e}; run `bash scripts/services`"));
    c.execute(&axe, vec![]).await.expect("load axe-core");
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             axe.run(document, {resultTypes: ['violations']})\
               .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')\
                 .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' at ' + v.nodes.map(n => n.target.join(' ')).join(', '))))\
               .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .expect("run axe-core");
    let list: Vec<String> = serde_json::from_value(found).expect("a list");
    assert!(list.is_empty(), "accessibility of {what}: {list:#?}");
}

/// Clicks the element, finding it again if the page replaced it meanwhile (live updates).
pub async fn click(c: &Client, css: &str) {
    for _ in 0..20 {
        match c.find(Locator::Css(css)).await {
            Ok(e) => match e.click().await {
                Ok(()) => return,
                Err(e) if e.is_stale_element_reference() => {}
                Err(e) => panic!("click {css}: {e}"),
            },
            Err(e) => panic!("find {css}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} kept going stale");
}

/// Waits until the page's text contains `needle`.
pub async fn wait_text(c: &Client, needle: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        // Between two pages there may be no `main` for a moment.
        let text = match c.find(Locator::Css("main")).await {
            Ok(m) => m.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "`{needle}` did not appear; the page says:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
