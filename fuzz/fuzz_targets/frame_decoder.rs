//! Any byte stream from a peer: decoding never panics, and whatever decodes
//! re-encodes to a frame that decodes to the same message.
#![no_main]

use isola_protocol::frame::{encode, read_frame};
use isola_protocol::{Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok(req) = read_frame::<Request, _>(&mut r) {
        let again = encode(&req).expect("a decoded request encodes");
        let back: Request = read_frame(&mut again.as_slice()).expect("and decodes again");
        assert_eq!(back, req);
    }
    let mut r = data;
    while let Ok(resp) = read_frame::<Response, _>(&mut r) {
        let again = encode(&resp).expect("a decoded response encodes");
        let back: Response = read_frame(&mut again.as_slice()).expect("and decodes again");
        assert_eq!(back, resp);
    }
});
