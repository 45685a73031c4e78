//! Keys, proofs and public signals in snarkjs's JSON (`verification_key.json`, `proof.json`,
//! `public.json`), so anyone can check a proof with `snarkjs groth16 verify` and get an
//! Ethereum verifier from `snarkjs zkey export solidityverifier`'s template. Coordinates are
//! affine, in decimal; an Fq2 element is `[c0, c1]`; a point carries a third coordinate, `"1"`
//! (or `["1", "0"]`), as snarkjs writes it.

use std::str::FromStr;

use ark_bn254::{Fq, Fq2, Fr, G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::PrimeField;
use serde_json::{json, Value};

use crate::keys::{PreparedKey, Proof, VerifyingKey};
use crate::ZkError;

fn bad(what: &'static str, reason: impl Into<String>) -> ZkError {
    ZkError::Encoding {
        what,
        reason: reason.into(),
    }
}

fn g1(p: &G1Affine) -> Value {
    match p.xy() {
        Some((x, y)) => json!([x.to_string(), y.to_string(), "1"]),
        None => json!(["0", "1", "0"]),
    }
}

fn g2(p: &G2Affine) -> Value {
    match p.xy() {
        Some((x, y)) => json!([
            [x.c0.to_string(), x.c1.to_string()],
            [y.c0.to_string(), y.c1.to_string()],
            ["1", "0"]
        ]),
        None => json!([["0", "0"], ["1", "0"], ["0", "0"]]),
    }
}

/// A canonical decimal field element.
fn element<F: PrimeField + FromStr>(what: &'static str, v: &Value) -> Result<F, ZkError> {
    let text = v
        .as_str()
        .ok_or_else(|| bad(what, "a coordinate is not a decimal string"))?;
    let x = F::from_str(text).map_err(|_| bad(what, format!("{text:?} is not a number")))?;
    if x.into_bigint().to_string() != text {
        return Err(bad(
            what,
            format!("{text:?} is not below the field's modulus, without leading zeros"),
        ));
    }
    Ok(x)
}

fn parse_g1(what: &'static str, v: &Value) -> Result<G1Affine, ZkError> {
    let c = v
        .as_array()
        .filter(|c| c.len() == 3)
        .ok_or_else(|| bad(what, "a G1 point is [x, y, z]"))?;
    if c[2] != json!("1") {
        return Err(bad(what, "only affine points (z = 1) are accepted"));
    }
    let p = G1Affine::new_unchecked(element::<Fq>(what, &c[0])?, element::<Fq>(what, &c[1])?);
    if !p.is_on_curve() || !p.is_in_correct_subgroup_assuming_on_curve() {
        return Err(bad(what, "a G1 point is not on the curve"));
    }
    Ok(p)
}

fn parse_fq2(what: &'static str, v: &Value) -> Result<Fq2, ZkError> {
    let c = v
        .as_array()
        .filter(|c| c.len() == 2)
        .ok_or_else(|| bad(what, "an Fq2 element is [c0, c1]"))?;
    Ok(Fq2::new(
        element::<Fq>(what, &c[0])?,
        element::<Fq>(what, &c[1])?,
    ))
}

fn parse_g2(what: &'static str, v: &Value) -> Result<G2Affine, ZkError> {
    let c = v
        .as_array()
        .filter(|c| c.len() == 3)
        .ok_or_else(|| bad(what, "a G2 point is [x, y, z]"))?;
    if c[2] != json!(["1", "0"]) {
        return Err(bad(what, "only affine points (z = 1) are accepted"));
    }
    let p = G2Affine::new_unchecked(parse_fq2(what, &c[0])?, parse_fq2(what, &c[1])?);
    if !p.is_on_curve() || !p.is_in_correct_subgroup_assuming_on_curve() {
        return Err(bad(
            what,
            "a G2 point is not on the curve or not in its subgroup",
        ));
    }
    Ok(p)
}

impl VerifyingKey {
    /// `verification_key.json`.
    pub fn to_snarkjs(&self) -> Value {
        let vk = &self.0;
        json!({
            "protocol": "groth16",
            "curve": "bn128",
            "nPublic": vk.gamma_abc_g1.len() - 1,
            "vk_alpha_1": g1(&vk.alpha_g1),
            "vk_beta_2": g2(&vk.beta_g2),
            "vk_gamma_2": g2(&vk.gamma_g2),
            "vk_delta_2": g2(&vk.delta_g2),
            "IC": vk.gamma_abc_g1.iter().map(g1).collect::<Vec<_>>(),
        })
    }

    pub fn from_snarkjs(v: &Value) -> Result<Self, ZkError> {
        const WHAT: &str = "verification key";
        if v["protocol"] != json!("groth16") || v["curve"] != json!("bn128") {
            return Err(bad(WHAT, "not a groth16 key on bn128"));
        }
        let ic = v["IC"]
            .as_array()
            .ok_or_else(|| bad(WHAT, "no IC array"))?
            .iter()
            .map(|p| parse_g1(WHAT, p))
            .collect::<Result<Vec<_>, _>>()?;
        if ic.len() != 4 {
            return Err(bad(
                WHAT,
                format!("{} public inputs, not 3", ic.len().saturating_sub(1)),
            ));
        }
        Ok(VerifyingKey(ark_groth16::VerifyingKey {
            alpha_g1: parse_g1(WHAT, &v["vk_alpha_1"])?,
            beta_g2: parse_g2(WHAT, &v["vk_beta_2"])?,
            gamma_g2: parse_g2(WHAT, &v["vk_gamma_2"])?,
            delta_g2: parse_g2(WHAT, &v["vk_delta_2"])?,
            gamma_abc_g1: ic,
        }))
    }
}

impl Proof {
    /// `proof.json`.
    pub fn to_snarkjs(&self) -> Value {
        json!({
            "pi_a": g1(&self.0.a),
            "pi_b": g2(&self.0.b),
            "pi_c": g1(&self.0.c),
            "protocol": "groth16",
            "curve": "bn128",
        })
    }

    pub fn from_snarkjs(v: &Value) -> Result<Self, ZkError> {
        const WHAT: &str = "proof";
        Ok(Proof(ark_groth16::Proof {
            a: parse_g1(WHAT, &v["pi_a"])?,
            b: parse_g2(WHAT, &v["pi_b"])?,
            c: parse_g1(WHAT, &v["pi_c"])?,
        }))
    }
}

/// `public.json`: the public signals in decimal.
pub fn public_to_snarkjs(elements: &[Fr; 3]) -> Value {
    json!(elements.iter().map(|x| x.to_string()).collect::<Vec<_>>())
}

pub fn public_from_snarkjs(v: &Value) -> Result<[Fr; 3], ZkError> {
    const WHAT: &str = "public signals";
    let items = v
        .as_array()
        .filter(|a| a.len() == 3)
        .ok_or_else(|| bad(WHAT, "three public signals expected"))?;
    Ok([
        element(WHAT, &items[0])?,
        element(WHAT, &items[1])?,
        element(WHAT, &items[2])?,
    ])
}

/// Checks a proof against raw public signals (what `verity zk verify` reads from snarkjs files).
pub fn verify_signals(key: &PreparedKey, signals: &[Fr; 3], proof: &Proof) -> Result<(), ZkError> {
    crate::keys::verify_elements(key, signals, proof)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_json_is_refused_with_a_reason() {
        for (v, reason) in [
            (json!({"pi_a": ["1", "2"]}), "[x, y, z]"),
            (json!({"pi_a": ["1", "3", "1"]}), "not on the curve"),
            (json!({"pi_a": ["01", "2", "1"]}), "leading zeros"),
            (json!({"pi_a": [1, 2, "1"]}), "decimal string"),
        ] {
            let err = Proof::from_snarkjs(&v).unwrap_err().to_string();
            assert!(err.contains(reason), "{err}");
        }
        assert!(public_from_snarkjs(&json!(["1", "2"])).is_err());
        let p = "21888242871839275222246405745257275088548364400416034343698204186575808495617";
        assert!(public_from_snarkjs(&json!([p, "1", "2"])).is_err());
    }
}
