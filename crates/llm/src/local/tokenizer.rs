//! A `tokenizers::Tokenizer` built from GGUF metadata (the SmolLM2 GGUF ships
//! no tokenizer.json).
//!
//! SmolLM2's tokenizer is GPT-2-style byte-level BPE whose pre-tokenizer is
//! `Digits(individual) → ByteLevel(add_prefix_space = false)`. The generic
//! GGUF route (and candle's `TokenizerFromGguf` for an unknown `pre`) uses the
//! default ByteLevel pre-tokenizer, which adds a leading space and so shifts
//! every prompt's first token; this builds the right pipeline.

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use crate::LlmError;

fn meta<'a>(ct: &'a Content, key: &str) -> Result<&'a Value, LlmError> {
    ct.metadata
        .get(key)
        .ok_or_else(|| LlmError::Model(format!("GGUF metadata has no `{key}`")))
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>, LlmError> {
    let arr = v
        .to_vec()
        .map_err(|_| LlmError::Model(format!("`{key}` is not an array")))?;
    arr.iter()
        .map(|x| {
            x.to_string()
                .cloned()
                .map_err(|_| LlmError::Model(format!("`{key}` holds a non-string")))
        })
        .collect()
}

/// Builds the tokenizer; returns it with the ids of the control tokens.
pub fn from_gguf(ct: &Content) -> Result<Tokenizer, LlmError> {
    let model = meta(ct, "tokenizer.ggml.model")?
        .to_string()
        .map_err(|e| LlmError::Model(e.to_string()))?;
    if model != "gpt2" {
        return Err(LlmError::Model(format!(
            "tokenizer model {model:?} is not supported (byte-level BPE \"gpt2\" only)"
        )));
    }
    let tokens = strings(meta(ct, "tokenizer.ggml.tokens")?, "tokenizer.ggml.tokens")?;
    let merges: Vec<(String, String)> =
        strings(meta(ct, "tokenizer.ggml.merges")?, "tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| LlmError::Model(format!("bad merge {m:?}")))
            })
            .collect::<Result<_, _>>()?;
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| LlmError::Model(e.to_string()))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    // Control tokens (type 3), e.g. <|im_start|>, <|im_end|>, <|endoftext|>.
    if let Ok(Value::Array(types)) = meta(ct, "tokenizer.ggml.token_type") {
        let specials: Vec<AddedToken> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(t.to_i32(), Ok(3) | Ok(4)))
            .filter_map(|(i, _)| tokens.get(i))
            .map(|t| AddedToken::from(t.clone(), true))
            .collect();
        tok.add_special_tokens(specials)
            .map_err(|e| LlmError::Model(e.to_string()))?;
    }
    Ok(tok)
}
