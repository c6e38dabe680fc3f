//! Who paid, as WeChat Pay names them.
//!
//! Cloud pay is WeChat Pay's service-provider mode (`mch_id` is the platform's,
//! `sub_mch_id` the merchant's). In that mode the user's openid *in the mini-program* is
//! `sub_openid` / `subOpenid`, and `openid` is the same user under the provider's appid:
//! a different string. So the sandbox answers with the unifiedOrder `openid` as
//! `sub_openid` and a stable stand-in as `openid`. (Inferred from v2's service-provider
//! fields; the cloud-pay docs' examples show two different values.)

/// A stable, openid-shaped (28 characters) identifier of the same payer under the
/// provider's appid.
pub(crate) fn provider_openid(user_openid: &str) -> String {
    let first = fnv1a(user_openid.as_bytes(), 0xcbf2_9ce4_8422_2325);
    let second = fnv1a(user_openid.as_bytes(), 0x8422_2325_cbf2_9ce4);
    let mut openid = format!("oSbx{first:016x}{second:016x}");
    openid.truncate(28);
    openid
}

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_openid_is_stable_and_differs_from_the_user_openid() {
        let user = "oZp5x0aAbCdEfGhIjKlMnOpQrStU";
        assert_eq!(provider_openid(user), provider_openid(user));
        assert_ne!(provider_openid(user), user);
        assert_eq!(provider_openid(user).len(), 28);
        assert_ne!(provider_openid(user), provider_openid("oOtherUser"));
    }
}
