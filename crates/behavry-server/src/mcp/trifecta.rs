//! The lethal trifecta: an agent that has read untrusted content and
//! touched private data must not then reach a tool that can send data
//! out, since the untrusted content may be what tells it to.
//!
//! Tools are tagged `untrusted` (returns content from outside: web pages,
//! search results, inboxes), `private` (reads the organisation's data) and
//! `external` (can send data out). Well-known tool names carry default
//! tags; admins tag a whole server (`untrusted`, `private`, `external` in
//! the server's `tags`) or one tool (`tool:<name>=<tag>`), and remove a tag
//! with `!` (`tool:fetch=!external`) or all of them with `none`.

/// What a tool is, for the trifecta.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exposure {
    pub untrusted: bool,
    pub private: bool,
    pub external: bool,
}

impl Exposure {
    /// Applies one tag: `untrusted`, `private` or `external` adds it,
    /// `!untrusted` (etc.) removes it, `none` removes all three.
    fn apply(&mut self, tag: &str) {
        let (on, name) = match tag.strip_prefix('!') {
            Some(name) => (false, name),
            None => (true, tag),
        };
        match name {
            "untrusted" => self.untrusted = on,
            "private" => self.private = on,
            "external" => self.external = on,
            "none" if on => *self = Exposure::default(),
            _ => {}
        }
    }
}

/// Checks a server tag that speaks to the trifecta, so that a typo does not
/// silently leave a tool unprotected: `tool:<name>=<tag>` and `!<tag>` must
/// name `untrusted`, `private` or `external` (or `none`, un-negated). Other
/// tags are free-form labels.
pub fn check_tag(tag: &str) -> Result<(), String> {
    const KNOWN: &str = "untrusted, private, external, or none";
    let (whole, tag) = match tag.strip_prefix("tool:") {
        Some(rest) => match rest.split_once('=') {
            Some((name, t)) if !name.is_empty() => (true, t),
            _ => {
                return Err(format!(
                    "tag `{tag}` must look like `tool:<tool name>=<{KNOWN}>`"
                ));
            }
        },
        None => (false, tag),
    };
    let name = tag.strip_prefix('!');
    let ok = match name {
        Some(n) => matches!(n, "untrusted" | "private" | "external"),
        None => !whole || matches!(tag, "untrusted" | "private" | "external" | "none"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag `{tag}` is not a trifecta tag: expected {KNOWN}, optionally negated with `!` (except none)"
        ))
    }
}

/// The exposure of `tool` on a server with `tags`: the defaults for its
/// name, then the server's tags, then the tool's own (`tool:<name>=<tag>`),
/// so the more specific setting wins and an admin can remove a default
/// that does not fit (`tool:fetch=!external`, or `!untrusted` for a whole
/// server).
pub fn exposure(tags: &[String], tool: &str) -> Exposure {
    fn own(tag: &str) -> Option<(&str, &str)> {
        tag.strip_prefix("tool:").and_then(|t| t.split_once('='))
    }
    let mut e = default_exposure(tool);
    for tag in tags.iter().filter(|t| own(t).is_none()) {
        e.apply(tag);
    }
    for (name, tag) in tags.iter().filter_map(|t| own(t)) {
        if name == tool {
            e.apply(tag);
        }
    }
    e
}

/// Defaults for well-known tools, by the words in their names: fetching
/// and browsing read untrusted content (and a fetch can carry data out in
/// its URL); mail, chat, comments and HTTP requests send data out; files,
/// databases, mailboxes and secrets are private.
fn default_exposure(tool: &str) -> Exposure {
    let name = tool.to_ascii_lowercase().replace(['-', '.', ' '], "_");
    let words: Vec<&str> = name.split('_').filter(|w| !w.is_empty()).collect();
    let has = |w: &str| words.contains(&w);
    let mut e = Exposure::default();
    if [
        "fetch",
        "browse",
        "navigate",
        "scrape",
        "crawl",
        "search_web",
        "web",
    ]
    .iter()
    .any(|w| has(w))
        || name.contains("web_search")
    {
        e.untrusted = true;
    }
    if has("fetch")
        || has("webhook")
        || has("http")
        || ((has("send") || has("post") || has("reply") || has("forward"))
            && [
                "email", "mail", "message", "messages", "slack", "chat", "sms", "tweet",
            ]
            .iter()
            .any(|w| has(w)))
        || (has("comment") && (has("add") || has("create") || has("post")))
        || name == "post_message"
        || name == "send_email"
        || name == "chat_postmessage"
    {
        e.external = true;
    }
    if ((has("read") || has("get") || has("list") || has("query") || has("search"))
        && [
            "file", "files", "email", "emails", "inbox", "mail", "secret", "secrets", "env",
            "database", "table", "records",
        ]
        .iter()
        .any(|w| has(w)))
        || has("query")
        || has("sql")
        || name == "read_text_file"
        || name == "read_multiple_files"
    {
        e.private = true;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_tools_have_default_tags() {
        assert!(default_exposure("fetch").untrusted && default_exposure("fetch").external);
        assert!(default_exposure("send_email").external);
        assert!(default_exposure("slack_post_message").external);
        assert!(default_exposure("add_issue_comment").external);
        assert!(default_exposure("read_file").private);
        assert!(default_exposure("get-env").private);
        assert!(default_exposure("query").private);
        assert_eq!(default_exposure("echo"), Exposure::default());
        assert_eq!(default_exposure("get-sum"), Exposure::default());
        assert_eq!(default_exposure("list_directory"), Exposure::default());
    }

    #[test]
    fn admins_add_and_remove_tags_the_specific_winning() {
        let tags = |t: &[&str]| t.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        assert_eq!(exposure(&tags(&[]), "fetch"), default_exposure("fetch"));
        let internal = exposure(&tags(&["tool:fetch=!external"]), "fetch");
        assert!(internal.untrusted && !internal.external);
        assert_eq!(
            exposure(&tags(&["tool:fetch=none"]), "fetch"),
            Exposure::default()
        );
        // Server-wide first, then the tool's own, whatever the order.
        assert!(exposure(&tags(&["!untrusted", "tool:fetch=untrusted"]), "fetch").untrusted);
        assert!(exposure(&tags(&["tool:fetch=untrusted", "!untrusted"]), "fetch").untrusted);
        assert!(!exposure(&tags(&["!untrusted"]), "browse").untrusted);
        assert!(exposure(&tags(&["private"]), "echo").private);
        assert!(!exposure(&tags(&["tool:other=private"]), "echo").private);
        assert!(!exposure(&tags(&["none", "bogus"]), "fetch").external);
    }

    #[test]
    fn trifecta_tags_are_checked_and_labels_left_alone() {
        for ok in [
            "prod",
            "untrusted",
            "!external",
            "tool:fetch=!external",
            "tool:db=private",
            "tool:x=none",
            "none",
        ] {
            assert_eq!(check_tag(ok), Ok(()), "{ok}");
        }
        for bad in [
            "!extenral",
            "!none",
            "tool:fetch=extenral",
            "tool:fetch",
            "tool:=private",
            "tool:fetch=!none",
        ] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }
}
