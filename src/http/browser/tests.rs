use super::*;

fn server(public_url: Option<&str>, allowed: &[&str]) -> ServerConfig {
    ServerConfig {
        public_url: public_url.map(str::to_owned),
        allowed_origins: allowed.iter().map(|s| s.to_string()).collect(),
        ..ServerConfig::default()
    }
}

fn listen() -> SocketAddr {
    "127.0.0.1:3000".parse().unwrap()
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, v.parse().unwrap());
    }
    h
}

fn status(result: Result<(), ApiError>) -> Option<StatusCode> {
    result.err().map(|e| e.into_response().status())
}

#[test]
fn host_names_strip_ports_and_brackets() {
    assert_eq!(hostname("Example.COM:3000"), "example.com");
    assert_eq!(hostname("[::1]:3000"), "::1");
    assert_eq!(hostname("localhost"), "localhost");
    assert_eq!(hostname("ci.example.com."), "ci.example.com");
}

#[test]
fn only_the_daemons_own_hosts_are_answered() {
    let s = server(Some("https://ci.example.com/runnerhub"), &[]);
    for ok in [
        "127.0.0.1:3000",
        "localhost:3000",
        "[::1]:3000",
        "ci.example.com",
        "CI.example.com:443",
    ] {
        assert_eq!(
            status(check(
                &s,
                listen(),
                &Method::GET,
                &headers(&[("host", ok)]),
                None
            )),
            None,
            "{ok}"
        );
    }
    for bad in ["evil.example:3000", "10.1.2.3:3000", ""] {
        assert_eq!(
            status(check(
                &s,
                listen(),
                &Method::GET,
                &headers(&[("host", bad)]),
                None
            )),
            Some(StatusCode::MISDIRECTED_REQUEST),
            "{bad}"
        );
    }
    // On 0.0.0.0 any address of the machine is its own; names still are not.
    let any: SocketAddr = "0.0.0.0:3000".parse().unwrap();
    let h = headers(&[("host", "10.1.2.3:3000")]);
    assert_eq!(status(check(&s, any, &Method::GET, &h, None)), None);
    let h = headers(&[("host", "evil.example")]);
    assert!(status(check(&s, any, &Method::GET, &h, None)).is_some());
}

#[test]
fn cross_site_writes_are_refused_and_bodiless_calls_pass() {
    let s = server(None, &["https://dash.example.com"]);
    let host = ("host", "127.0.0.1:3000");
    let post = |pairs: &[(&'static str, &str)]| {
        let mut all = vec![host];
        all.extend_from_slice(pairs);
        status(check(&s, listen(), &Method::POST, &headers(&all), None))
    };
    // curl -X POST: no body, no Origin.
    assert_eq!(post(&[]), None);
    assert_eq!(post(&[("content-length", "0")]), None);
    // A cross-site form post.
    let form = [
        ("origin", "https://evil.example"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("content-length", "9"),
    ];
    assert_eq!(post(&form), Some(StatusCode::FORBIDDEN));
    assert_eq!(
        post(&[("sec-fetch-site", "cross-site")]),
        Some(StatusCode::FORBIDDEN)
    );
    assert_eq!(
        post(&[("sec-fetch-site", "same-site")]),
        Some(StatusCode::FORBIDDEN)
    );
    // A non-JSON body from no browser at all.
    assert_eq!(
        post(&[("content-type", "text/plain"), ("content-length", "2")]),
        Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
    );
    // Same origin, an allowed origin, JSON.
    let json = [
        ("content-type", "application/json"),
        ("content-length", "2"),
    ];
    for origin in ["http://127.0.0.1:3000", "https://dash.example.com/"] {
        let mut pairs = vec![("origin", origin), ("sec-fetch-site", "same-site")];
        pairs.extend_from_slice(&json);
        assert_eq!(post(&pairs), None, "{origin}");
    }
    assert_eq!(post(&json), None);
}
