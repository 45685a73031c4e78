//! Chat templates: the Jinja template a chat model ships (`chat_template.jinja`, or the
//! `chat_template` of `tokenizer_config.json`) turns a conversation into the prompt text the
//! model was trained on. Rendered with minijinja, as Hugging Face's own servers do.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is not valid JSON: {reason}")]
    Config { path: String, reason: String },
    #[error("the chat template does not parse: {0}")]
    Syntax(String),
    #[error("the chat template failed: {0}")]
    Render(String),
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

/// A compiled-checked chat template and the special tokens it may name.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Checks that `source` parses.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate, ChatError> {
        environment()
            .template_from_str(source)
            .map_err(|e| ChatError::Syntax(describe(&e)))?;
        Ok(ChatTemplate {
            source: source.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// The template in a model's directory: `chat_template.jinja`, else the `chat_template`
    /// string of `tokenizer_config.json`; `None` when the model has neither (not a chat model).
    pub fn from_dir(
        dir: &Path,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<Option<ChatTemplate>, ChatError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|e| ChatError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        };
        let jinja = dir.join("chat_template.jinja");
        if jinja.exists() {
            return ChatTemplate::new(&read(&jinja)?, bos_token, eos_token).map(Some);
        }
        let config = dir.join("tokenizer_config.json");
        if !config.exists() {
            return Ok(None);
        }
        let value: serde_json::Value =
            serde_json::from_str(&read(&config)?).map_err(|e| ChatError::Config {
                path: config.display().to_string(),
                reason: e.to_string(),
            })?;
        match value.get("chat_template").and_then(|t| t.as_str()) {
            Some(source) => ChatTemplate::new(source, bos_token, eos_token).map(Some),
            None => Ok(None),
        }
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The prompt for `messages`, ending with the assistant's turn opened when
    /// `add_generation_prompt` is set.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        environment()
            .render_str(
                &self.source,
                minijinja::context! {
                    messages => messages,
                    add_generation_prompt => add_generation_prompt,
                    bos_token => &self.bos_token,
                    eos_token => &self.eos_token,
                },
            )
            .map_err(|e| ChatError::Render(describe(&e)))
    }
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    // Hugging Face templates reject conversations they cannot format this way.
    env.add_function(
        "raise_exception",
        |message: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                message,
            ))
        },
    );
    env
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{detail} (line {})", e.line().unwrap_or(0)),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-Instruct's template, as its GGUF and tokenizer_config.json carry it.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_a_chatml_conversation() {
        let t = ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap();
        let prompt = t
            .render(&[ChatMessage::new("user", "What is 2+2?")], true)
            .unwrap();
        assert_eq!(
            prompt,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        let own_system = t
            .render(
                &[
                    ChatMessage::new("system", "Be brief."),
                    ChatMessage::new("user", "Hi"),
                ],
                false,
            )
            .unwrap();
        assert_eq!(
            own_system,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn a_broken_template_and_a_refusal_are_clear_errors() {
        let err = ChatTemplate::new("{% for m in messages %}", "", "").unwrap_err();
        assert!(matches!(err, ChatError::Syntax(_)), "{err}");
        let strict = ChatTemplate::new(
            "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with the user') }}{% endif %}",
            "",
            "",
        )
        .unwrap();
        let err = strict
            .render(&[ChatMessage::new("assistant", "x")], true)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("Conversations must start with the user"),
            "{err}"
        );
    }

    #[test]
    fn special_tokens_are_available_to_the_template() {
        let t = ChatTemplate::new(
            "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}",
            "<s>",
            "</s>",
        )
        .unwrap();
        assert_eq!(
            t.render(&[ChatMessage::new("user", "x")], false).unwrap(),
            "<s>x</s>"
        );
    }
}
