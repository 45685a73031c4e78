//! A generation task's prompt document, as a worker reads it from the blob store: parsing and
//! checking never panic, and a document that passes renders to token ids with the bundled
//! model's tokenizer (chat messages through a chat template) without panicking either.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use verity_lm::task::parse_prompt;
use verity_lm::{GenerationConfig, PromptRenderer, Tokenizer};

fn renderer() -> &'static PromptRenderer {
    static RENDERER: OnceLock<PromptRenderer> = OnceLock::new();
    RENDERER.get_or_init(|| {
        let tokenizer = Tokenizer::from_bytes(
            include_bytes!("../../models/tiny_lm/tokenizer.json"),
            "tiny_lm",
        )
        .unwrap();
        let config = GenerationConfig {
            eos_token_ids: vec![0],
            bos_token_id: Some(0),
            context: 256,
            chat_template: Some(
                "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}".into(),
            ),
        };
        PromptRenderer::new(tokenizer, config).unwrap()
    })
}

fuzz_target!(|bytes: &[u8]| {
    if let Ok(doc) = parse_prompt(bytes) {
        let _ = renderer().prompt_ids(&doc);
    }
});
