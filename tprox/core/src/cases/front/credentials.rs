//! The front case about credentials: wrong ones, missing ones and the ways fronts let them
//! through, and the right ones checked as strictly as RFC 1929 and RFC 9110 say.

use std::time::Duration;

use super::{echo_through, front, tunnel_as, Asking};
use crate::case::{Case, Level};
use crate::front::{Front, Refused, Style};
use crate::harness::{Ctx, PROMPT};
use crate::net::wait_end;
use crate::outcome::{Failure, Stop};
use crate::rules::Rule;

pub static BAD_CREDENTIALS: Case = Case {
    id: "front/bad-credentials",
    name: "Credentials checked",
    requirement: "A front that requires credentials MUST reject wrong ones, an empty password and a prefix of the right one among them (SOCKS5: a username/password status other than 0, then a close; HTTP: 407 with Proxy-Authenticate), MUST reject a client that offers none (SOCKS5: method 0xFF, RFC 1928 §3; HTTP: 407), also right after a login from the same address, and MUST NOT connect such clients anywhere; and the right ones MUST open the tunnel, the SOCKS5 status starting with version 0x01 (RFC 1929), the HTTP header's name matched without regard to case (RFC 9110 §5.1).",
    rules: &[Rule::R13],
    level: Level::Must,
    alone: false,
    assumes: "Runs when --front gives credentials (KIND:USER:PASS); skipped otherwise. Each answer comes within PROMPT (5 s).",
    body: |cx| Box::pin(bad_credentials(cx)),
};

async fn bad_credentials(mut cx: Ctx) -> Result<(), Stop> {
    let front = front(&cx)?;
    let Some((user, pass)) = front.credentials().cloned() else {
        return Err(Stop::Skip(
            "the front was given no credentials (run with --front KIND:USER:PASS)".into(),
        ));
    };
    let wrong = |pass: String| Style {
        credentials: Some((user.clone(), pass)),
        strict: true,
        ..Style::default()
    };
    let anonymous = Style {
        anonymous: true,
        ..Style::default()
    };
    let mut attempts = vec![
        ("a wrong password", wrong(format!("{pass}-wrong")), "the front does not check the password"),
        ("an empty password", wrong(String::new()), "the front compares the password only as far as the given one goes: an empty one matches"),
    ];
    if pass.chars().count() >= 2 {
        let prefix: String = pass.chars().take(pass.chars().count() - 1).collect();
        attempts.push((
            "a prefix of the right password",
            wrong(prefix),
            "the front compares the password only as far as the given one goes",
        ));
    }
    attempts.push((
        "a client that offers no credentials",
        anonymous.clone(),
        if front.is_socks5() {
            "a front that requires credentials must not choose \"no authentication\" (0x00), even when it is all the client offers: it answers 0xFF. A front that remembers logins by address fails here too, since the cases before this one logged in from 127.0.0.1"
        } else {
            "a CONNECT without Proxy-Authorization must get 407 from a front that requires credentials. A front that remembers logins by address fails here too, since the cases before this one logged in from 127.0.0.1"
        },
    ));
    for (what, style, hint) in &attempts {
        refused_login(&mut cx, &front, style, what, hint).await?;
    }
    // The right credentials still open the tunnel, checked as strictly as the wrong ones
    // were: RFC 1929's status version, and for HTTP the header's name in lower case, which is
    // the same field (RFC 9110 §5.1).
    let control = Style {
        strict: true,
        lowercase_header: true,
        ..Style::default()
    };
    let login = if front.is_socks5() {
        "the right password"
    } else {
        "the right password, in a header named proxy-authorization"
    };
    let what = format!("{login}, answered as RFC 1929 and RFC 9110 say,");
    let hint = if front.is_socks5() {
        "the username/password status must start with version 0x01 (RFC 1929), not SOCKS's 0x05"
    } else {
        "header names are case-insensitive: proxy-authorization is Proxy-Authorization"
    };
    let asking = Asking {
        what: &what,
        refused_hint: Some(hint),
        silent_hint: None,
    };
    let client = tunnel_as(&cx, &front, &control, PROMPT, asking).await?;
    cx.trace.event(format_args!("{login} opened the tunnel"));
    echo_through(&mut cx, client, &format!("a wrong password and {login}")).await?;
    // A login is for its connection only: the next client from the same address must log in
    // again.
    refused_login(
        &mut cx,
        &front,
        &anonymous,
        "a client that offers no credentials, from the address that has just logged in,",
        "the front remembers logins by the client's address: each connection must log in",
    )
    .await
}

/// Asks with `style`'s credentials, which `front` must refuse: SOCKS5 with a failed status
/// or no acceptable method, then a close; HTTP with 407 and Proxy-Authenticate. No connection
/// to the destination may come of it.
async fn refused_login(
    cx: &mut Ctx,
    front: &Front,
    style: &Style,
    what: &str,
    hint: &str,
) -> Result<(), Stop> {
    let mut client = cx.connect_only().await?;
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], cx.dest.port()));
    let answer =
        tokio::time::timeout(PROMPT, front.handshake_with(&mut client, target, style)).await;
    let expected = match (front.is_socks5(), style.anonymous) {
        (true, true) => "no acceptable method (0xFF), then a close",
        (true, false) => "a failed username/password status, then a close",
        (false, _) => "407 with a Proxy-Authenticate header",
    };
    let expected = format!("{what} is answered with {expected}");
    match answer {
        Err(_) => return Err(Failure::new(expected, "no answer").into()),
        Ok(Ok(())) => {
            return Err(Failure::new(expected, "the front opened the tunnel")
                .hint(hint)
                .into())
        }
        Ok(Err(Refused::Broken(why))) if front.is_socks5() && !style.anonymous => {
            // A SOCKS5 front may close without a status; what matters is that it let no one in.
            cx.trace
                .event(format_args!("{what}: the front closed: {why}"));
        }
        Ok(Err(Refused::Broken(why))) => return Err(Failure::new(expected, why).into()),
        Ok(Err(Refused::Answered { code, text, head })) => {
            let right = match (front.is_socks5(), style.anonymous) {
                (true, true) => code == 0x1ff,
                (true, false) => code > 0x100,
                (false, _) => {
                    code == 407
                        && head
                            .lines()
                            .any(|l| l.to_ascii_lowercase().starts_with("proxy-authenticate:"))
                }
            };
            if !right {
                return Err(Failure::new(expected, text).into());
            }
            cx.trace
                .event(format_args!("{what}: the front answered {text}"));
        }
    }
    // No connection to the destination may come of it.
    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), cx.dest.accept()).await {
        return Err(Failure::new(
            format!("{what} is connected nowhere"),
            "the front dialed the destination for it",
        )
        .hint(hint)
        .into());
    }
    // After 0xFF it is the client that must close (RFC 1928 §3).
    if front.is_socks5() && !style.anonymous && wait_end(&mut client, PROMPT).await.is_none() {
        return Err(Failure::new(
            format!("the connection of {what} is closed after the failed authentication"),
            "it stayed open",
        )
        .into());
    }
    Ok(())
}
