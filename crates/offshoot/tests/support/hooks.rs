//! Webhook deliveries as GitHub and GitLab send them: signed (GitHub) or with the token
//! (GitLab), posted to the server's hook URL for an application.

use super::{Server, http_raw};

/// POSTs a webhook; the status code and body (0 and nothing when the server did not answer).
pub fn post(port: u16, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}", body.len());
    for (k, v) in headers {
        head.push_str(&format!("\r\n{k}: {v}"));
    }
    let out = http_raw(port, &head, body).unwrap_or_default();
    let code = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

/// An application's hook: where it is and its secret.
pub struct Hook {
    pub port: u16,
    pub path: String,
    pub secret: String,
}

impl Hook {
    pub fn of(s: &Server, app: &str) -> Hook {
        let w = s.json(&["app", "webhook", app]);
        let url = w["url"].as_str().expect("url");
        assert_eq!(w["gitlab_url"].as_str(), Some(url.replace("/github/", "/gitlab/").as_str()));
        assert!(url.starts_with(&format!("http://127.0.0.1:{}/", s.api)), "not the server's address: {url}");
        Hook::from_answer(s.api, &w)
    }

    /// From what `app webhook` answered, posted to the API on `port`.
    pub fn from_answer(port: u16, w: &serde_json::Value) -> Hook {
        let url = w["url"].as_str().expect("url");
        // The path after `http://HOST:PORT`.
        let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).expect("a path");
        Hook { port, path, secret: w["secret"].as_str().expect("secret").to_owned() }
    }

    pub fn github(&self, event: &str, delivery: &str, body: &str) -> (u16, String) {
        let sig = offshoot_git::hooks::sign_github(self.secret.as_bytes(), body.as_bytes());
        let headers = [("X-GitHub-Event", event.to_owned()), ("X-GitHub-Delivery", delivery.to_owned()), ("X-Hub-Signature-256", sig)];
        post(self.port, &self.path, &headers, body.as_bytes())
    }

    pub fn gitlab(&self, event: &str, uuid: &str, token: &str, body: &str) -> (u16, String) {
        let headers =
            [("X-Gitlab-Event", event.to_owned()), ("X-Gitlab-Event-UUID", uuid.to_owned()), ("X-Gitlab-Token", token.to_owned())];
        post(self.port, &self.path.replace("/github/", "/gitlab/"), &headers, body.as_bytes())
    }
}

/// A GitHub push of `after` on `branch`.
pub fn github_push(branch: &str, before: &str, after: &str) -> String {
    format!(
        r#"{{"ref":"refs/heads/{branch}","before":"{before}","after":"{after}","created":false,"deleted":false,"forced":false,"repository":{{"full_name":"o/r"}},"commits":[{{"id":"{after}","message":"change"}}]}}"#
    )
}
