//! The built page, read once at start-up and served from memory: only files that were in the
//! directory can be asked for, whatever the path says.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// A file's content type and bytes.
type File = (&'static str, Arc<[u8]>);

/// Files by URL path (`/index.html`, `/assets/index-3f9a.js`).
#[derive(Debug, Clone, Default)]
pub struct Assets {
    files: Arc<HashMap<String, File>>,
}

impl Assets {
    /// Reads every file under `dir`.
    pub fn load(dir: &Path) -> std::io::Result<Assets> {
        fn walk(
            dir: &Path,
            prefix: &str,
            out: &mut HashMap<String, (&'static str, Arc<[u8]>)>,
        ) -> std::io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = format!("{prefix}/{name}");
                if entry.file_type()?.is_dir() {
                    walk(&entry.path(), &path, out)?;
                } else {
                    let bytes = std::fs::read(entry.path())?;
                    out.insert(path, (content_type(&name), bytes.into()));
                }
            }
            Ok(())
        }
        let mut files = HashMap::new();
        walk(dir, "", &mut files)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        Ok(Assets { files: Arc::new(files) })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The file at `uri`'s path; `/` is `index.html`.
    pub fn serve(&self, uri: &Uri) -> Response {
        let path = match uri.path() {
            "/" => "/index.html",
            p => p,
        };
        let Some((mime, bytes)) = self.files.get(path) else {
            return (StatusCode::NOT_FOUND, "not found").into_response();
        };
        let mut response = Response::new(Body::from(bytes.to_vec()));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
        // Vite names bundles by their content: they never change. The page itself may.
        let cache =
            if path.starts_with("/assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if path == "/index.html" {
            // Everything the page loads comes from here; no framing by other sites.
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
                ),
            );
            headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        }
        response
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
