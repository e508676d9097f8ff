//! The dashboard's files (`provisioner/ui/`), built into the binary: no files to install and
//! nothing to build at run time. Plain HTML, CSS and ES modules, served under `/ui/static/`.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// The dashboard shell (`/ui/`): navigation and the region the modules render into.
pub const APP_HTML: &str = include_str!("../../ui/app.html");
/// The login page (`/ui/login`); `<!--message-->` is replaced by a fixed error line.
pub const LOGIN_HTML: &str = include_str!("../../ui/login.html");

/// `(name, body, content type)` of every file under `/ui/static/`.
const FILES: &[(&str, &str, &str)] = &[
    (
        "style.css",
        include_str!("../../ui/style.css"),
        "text/css; charset=utf-8",
    ),
    ("app.js", include_str!("../../ui/app.js"), JS),
    ("api.js", include_str!("../../ui/api.js"), JS),
    ("machines.js", include_str!("../../ui/machines.js"), JS),
    ("machine.js", include_str!("../../ui/machine.js"), JS),
    ("catalog.js", include_str!("../../ui/catalog.js"), JS),
    ("import.js", include_str!("../../ui/import.js"), JS),
];

const JS: &str = "text/javascript; charset=utf-8";

/// A static file by name: its body and content type.
pub fn get(name: &str) -> Option<(&'static str, &'static str)> {
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, body, ct)| (*body, *ct))
}

/// `body` as an HTML response.
pub fn html(body: &'static str) -> Response {
    with_html_type(body.into_response())
}

/// `body` (built at run time) as an HTML response.
pub fn html_owned(body: String) -> Response {
    with_html_type(body.into_response())
}

fn with_html_type(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn pages_load_no_inline_script() {
        for page in [super::APP_HTML, super::LOGIN_HTML] {
            for tag in page.split("<script").skip(1) {
                let open = tag.split('>').next().unwrap();
                assert!(
                    open.contains("src="),
                    "inline script in a page: <script{open}>"
                );
            }
            let handler = page.split(" on").skip(1).find(|rest| {
                let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
                !name.is_empty() && rest[name.len()..].starts_with('=')
            });
            assert!(handler.is_none(), "an inline event handler: on{handler:?}");
        }
        for (name, body, _) in super::FILES {
            if name.ends_with(".js") {
                assert!(!body.contains("innerHTML"), "{name} uses innerHTML");
            }
        }
    }
}
