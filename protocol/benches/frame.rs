//! Framing hot path: every agent call encodes one request and decodes one response.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use isola_protocol::frame::{encode, read_frame};
use isola_protocol::{Request, Response, RootfsSource};

fn frames(c: &mut Criterion) {
    let ping = Request::Ping;
    c.bench_function("encode+decode ping", |b| {
        b.iter(|| {
            let f = encode(black_box(&ping)).expect("encode");
            let r: Request = read_frame(&mut f.as_slice()).expect("decode");
            black_box(r)
        })
    });
    let create = Request::CreateContainer {
        id: "c1".into(),
        spec: Box::new(oci_spec::runtime::Spec::default()),
        rootfs: RootfsSource::Upload,
    };
    c.bench_function("encode+decode create (default OCI spec)", |b| {
        b.iter(|| {
            let f = encode(black_box(&create)).expect("encode");
            let r: Request = read_frame(&mut f.as_slice()).expect("decode");
            black_box(r)
        })
    });
    let ok = Response::Ok;
    c.bench_function("encode+decode ok reply", |b| {
        b.iter(|| {
            let f = encode(black_box(&ok)).expect("encode");
            let r: Response = read_frame(&mut f.as_slice()).expect("decode");
            black_box(r)
        })
    });
}

criterion_group!(benches, frames);
criterion_main!(benches);
