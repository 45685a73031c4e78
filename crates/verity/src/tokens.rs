//! Amounts as people write them: tokens with up to 18 decimals (`1.5`), and base units only
//! where a `--base-units` flag says so.

use anyhow::{bail, Context, Result};
use verity_types::{Amount, ONE_TOKEN};

/// Decimals of one token.
const DECIMALS: usize = 18;

/// The token's ticker in human output.
pub const SYMBOL: &str = "VRT";

/// Parses `text` as tokens (`1`, `1.5`, `0.000000000000000001`), or as base units when
/// `base_units` is set.
pub fn parse(text: &str, base_units: bool) -> Result<Amount> {
    let text = text.trim().replace('_', "");
    if base_units {
        return text
            .parse()
            .with_context(|| format!("{text:?} is not a whole number of base units"));
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        bail!("{text:?} is not an amount of tokens such as 1 or 1.5");
    }
    if fraction.len() > DECIMALS {
        bail!("{text:?} has more than {DECIMALS} decimals; a token has {DECIMALS}");
    }
    let whole: Amount = if whole.is_empty() {
        0
    } else {
        whole.parse().context("too many tokens")?
    };
    let fraction: Amount = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<DECIMALS$}")
            .parse()
            .expect("at most 18 digits")
    };
    whole
        .checked_mul(ONE_TOKEN)
        .and_then(|w| w.checked_add(fraction))
        .with_context(|| format!("{text} tokens do not fit in an amount"))
}

/// `amount` base units as tokens, without trailing zeros: `1.5 VRT`.
pub fn format(amount: Amount) -> String {
    format_as(amount, SYMBOL)
}

/// `amount` base units of Data Anchor Tokens (18 decimals too): `0.5185 DAT`.
pub fn format_dat(amount: Amount) -> String {
    format_as(amount, "DAT")
}

fn format_as(amount: Amount, symbol: &str) -> String {
    let whole = amount / ONE_TOKEN;
    let fraction = amount % ONE_TOKEN;
    if fraction == 0 {
        return format!("{whole} {symbol}");
    }
    let digits = format!("{fraction:0>DECIMALS$}");
    format!("{whole}.{} {symbol}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tokens_parse_with_decimals() {
        assert_eq!(parse("1", false).unwrap(), ONE_TOKEN);
        assert_eq!(parse("1.5", false).unwrap(), ONE_TOKEN * 3 / 2);
        assert_eq!(parse(".25", false).unwrap(), ONE_TOKEN / 4);
        assert_eq!(parse("0.000000000000000001", false).unwrap(), 1);
        assert_eq!(parse("1_000", false).unwrap(), 1_000 * ONE_TOKEN);
        assert_eq!(parse("1500", true).unwrap(), 1_500);
        for bad in [
            "",
            ".",
            "-1",
            "1.2.3",
            "1e18",
            "0.0000000000000000001",
            "abc",
        ] {
            assert!(parse(bad, false).is_err(), "{bad:?}");
        }
        assert!(parse("1.5", true).is_err());
        assert!(parse(&"9".repeat(40), false).is_err());
    }

    #[test]
    fn amounts_print_as_tokens() {
        assert_eq!(format(ONE_TOKEN), "1 VRT");
        assert_eq!(format(ONE_TOKEN * 3 / 2), "1.5 VRT");
        assert_eq!(format(1), "0.000000000000000001 VRT");
        assert_eq!(format(0), "0 VRT");
    }

    proptest! {
        #[test]
        fn format_and_parse_round_trip(amount in any::<u128>()) {
            let shown = format(amount);
            let number = shown.strip_suffix(" VRT").unwrap();
            prop_assert_eq!(parse(number, false).unwrap(), amount);
        }
    }
}
