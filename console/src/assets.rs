//! The page's files, embedded in the binary so the console needs no web server and no network.

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

const INDEX: Asset = Asset { content_type: "text/html; charset=utf-8", body: include_bytes!("assets/index.html") };

/// The file served at `path`, if any.
pub fn find(path: &str) -> Option<Asset> {
    let (content_type, body): (&str, &[u8]) = match path {
        "/" | "/index.html" => return Some(INDEX),
        "/app.js" => ("text/javascript; charset=utf-8", include_bytes!("assets/app.js")),
        "/map.js" => ("text/javascript; charset=utf-8", include_bytes!("assets/map.js")),
        "/timeline.js" => ("text/javascript; charset=utf-8", include_bytes!("assets/timeline.js")),
        "/sampling.js" => ("text/javascript; charset=utf-8", include_bytes!("assets/sampling.js")),
        "/style.css" => ("text/css; charset=utf-8", include_bytes!("assets/style.css")),
        "/favicon.svg" | "/favicon.ico" => ("image/svg+xml", include_bytes!("assets/favicon.svg")),
        _ => return None,
    };
    Some(Asset { content_type, body })
}
