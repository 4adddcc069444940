//! A `tokenizers::Tokenizer` built from GGUF metadata (GGUFs ship no
//! tokenizer.json).
//!
//! Both supported models use GPT-2-style byte-level BPE; the pre-tokenizer
//! is picked by `tokenizer.ggml.pre`, as llama.cpp does:
//! - `smollm` (SmolLM2): `Digits(individual) → ByteLevel(add_prefix_space =
//!   false)`, GPT-2's split regex inside ByteLevel. The generic GGUF route
//!   (and candle's `TokenizerFromGguf` for an unknown `pre`) uses the default
//!   ByteLevel pre-tokenizer, which adds a leading space and so shifts every
//!   prompt's first token.
//! - `qwen2` (Qwen2 / Qwen2.5): Qwen's split regex ([`QWEN2_SPLIT`],
//!   Isolated), then `ByteLevel` without prefix space and without its own
//!   regex; no Digits step (the regex already takes digits one by one).
//!   Its lookahead `\s+(?!\S)` needs onig (the workspace's `tokenizers`
//!   feature), not Rust's `regex`.

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

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

/// Qwen2's pre-tokenizer split, as in its `tokenizer.json` and llama.cpp's
/// `LLAMA_VOCAB_PRE_TYPE_QWEN2`.
pub const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Builds the tokenizer, control tokens (`<|im_start|>`, `<|im_end|>`, …)
/// added as special tokens.
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
    let pre = meta(ct, "tokenizer.ggml.pre")
        .ok()
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("");
    let pipeline = match pre {
        "qwen2" => {
            let split = Split::new(
                SplitPattern::Regex(QWEN2_SPLIT.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| LlmError::Model(format!("Qwen2 split regex: {e}")))?;
            Sequence::new(vec![
                split.into(),
                ByteLevel::new(false, false, false).into(),
            ])
        }
        "smollm" => Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ]),
        other => {
            return Err(LlmError::Model(format!(
                "pre-tokenizer {other:?} is not supported (smollm, qwen2)"
            )));
        }
    };
    tok.with_pre_tokenizer(Some(pipeline));
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
