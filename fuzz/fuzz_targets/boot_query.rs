//! The query string of the endpoints machines call (`/boot/ipxe`, `/boot/efi`, `/config`,
//! `/api/v1/nodes/*`), read by `MachineQuery` into each endpoint's own parameter struct, and a
//! MAC address as those endpoints parse it.
#![no_main]

use std::future::Future;
use std::task::{Context, Poll, Waker};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use libfuzzer_sys::fuzz_target;
use provisioner::boot::handlers::{ConfigQuery, MacQuery, ScriptQuery};
use provisioner::boot::machine_query::MachineQuery;
use provisioner::boot::node_api::TokenQuery;

/// `MachineQuery`'s extraction never waits (it reads the URI), so one poll completes it.
fn extract<T: serde::de::DeserializeOwned>(parts: &mut Parts) {
    let fut = MachineQuery::<T>::from_request_parts(parts, &());
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(_) => {}
        Poll::Pending => panic!("query extraction waited"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let _ = query.parse::<inventory::Mac>();
    // What hyper would not accept as a request target never reaches the handlers.
    let Ok(req) = axum::http::Request::builder()
        .uri(format!("/boot/ipxe?{query}"))
        .body(())
    else {
        return;
    };
    let (mut parts, ()) = req.into_parts();
    extract::<ScriptQuery>(&mut parts);
    extract::<MacQuery>(&mut parts);
    extract::<ConfigQuery>(&mut parts);
    extract::<TokenQuery>(&mut parts);
});
