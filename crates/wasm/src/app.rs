//! The web app's user interface (`web/index.html`; feature `app`, wasm32 only).
//!
//! The page opens the cap in the URL fragment (`#lafsr1…`), or one pasted into its text box, and
//! says what kind of cap it is and what it grants. Everything happens here in the tab: the only
//! requests the page makes are for its own files, none of which carries the cap (browsers never
//! send the fragment, and a pasted cap is put into the fragment with `history.replaceState`,
//! which sends nothing).
//!
//! The DOM is filled with `textContent` only, never HTML, so no cap text or error message can
//! inject markup.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Document, Element, Event, HtmlInputElement, Window};

use crate::{parse_share_link, CapInfo, LafsError};

/// Entry point, run by the loader as soon as the module is instantiated.
#[wasm_bindgen(start)]
fn start() -> Result<(), JsValue> {
    let window = web_sys::window().ok_or("no window")?;
    let document = window.document().ok_or("no document")?;
    let ui = Ui { window, document };

    let on_hash = {
        let ui = ui.clone();
        Closure::<dyn FnMut()>::new(move || ui.report(ui.show_fragment()))
    };
    ui.window
        .add_event_listener_with_callback("hashchange", on_hash.as_ref().unchecked_ref())?;
    // The page lives as long as the listener: leaking the closure is the intended lifetime.
    on_hash.forget();

    let on_submit = {
        let ui = ui.clone();
        Closure::<dyn FnMut(Event)>::new(move |event: Event| {
            event.prevent_default();
            ui.report(ui.show_input());
        })
    };
    ui.element("cap-form")?
        .add_event_listener_with_callback("submit", on_submit.as_ref().unchecked_ref())?;
    on_submit.forget();

    ui.element("open-button")?.remove_attribute("disabled")?;
    ui.show_fragment()?;
    // Lets tests (and scripts embedding the page) know the app is running.
    ui.document
        .document_element()
        .ok_or("no root element")?
        .set_attribute("data-lafs-ready", "true")
}

#[derive(Clone)]
struct Ui {
    window: Window,
    document: Document,
}

impl Ui {
    fn element(&self, id: &str) -> Result<Element, JsValue> {
        self.document
            .get_element_by_id(id)
            .ok_or_else(|| JsValue::from_str(&format!("page has no #{id}")))
    }

    fn input(&self) -> Result<HtmlInputElement, JsValue> {
        self.element("cap-input")?
            .dyn_into::<HtmlInputElement>()
            .map_err(|_| JsValue::from_str("#cap-input is not an input"))
    }

    /// Shows a failure of the page itself (not of a cap) where the user can see it.
    fn report(&self, result: Result<(), JsValue>) {
        if let Err(e) = result {
            let text = e
                .as_string()
                .unwrap_or_else(|| "unexpected error in the page".to_owned());
            if let Ok(status) = self.element("status") {
                status.set_text_content(Some(&format!("Error: {text}")));
            }
        }
    }

    /// Opens the cap in the URL fragment, if there is one.
    fn show_fragment(&self) -> Result<(), JsValue> {
        let hash = self.window.location().hash()?;
        let fragment = hash.strip_prefix('#').unwrap_or(&hash);
        if fragment.is_empty() {
            self.input()?.set_value("");
            return self.show_nothing();
        }
        let cap_part = fragment.split('&').next().unwrap_or_default();
        self.input()?.set_value(cap_part);
        match parse_share_link(fragment) {
            Ok(link) => self.show_cap(&link.cap()),
            Err(e) => self.show_error(&e),
        }
    }

    /// Opens the cap (or whole share link) typed or pasted into the text box.
    fn show_input(&self) -> Result<(), JsValue> {
        let input = self.input()?;
        let text = input.value();
        let text = text.trim();
        if text.is_empty() {
            return self.show_nothing();
        }
        // A whole share link (`https://…/#<cap>&…`) opens like its fragment.
        let fragment = text.split_once('#').map_or(text, |(_, f)| f);
        let history = self.window.history()?;
        let location = self.window.location();
        let here = format!("{}{}", location.pathname()?, location.search()?);
        match parse_share_link(fragment) {
            Ok(link) => {
                let info = link.cap();
                input.set_value(&info.text());
                let grid = link
                    .grid()
                    .map(|g| format!("&grid={g}"))
                    .unwrap_or_default();
                // The address now opens this cap: a shareable link. Sends nothing.
                history.replace_state_with_url(
                    &JsValue::NULL,
                    "",
                    Some(&format!("{here}#{}{grid}", info.text())),
                )?;
                self.show_cap(&info)
            }
            Err(e) => {
                // The address no longer names the previous cap, which is not what is shown.
                history.replace_state_with_url(&JsValue::NULL, "", Some(&here))?;
                self.show_error(&e)
            }
        }
    }

    fn show_nothing(&self) -> Result<(), JsValue> {
        self.element("result")?.set_attribute("hidden", "")?;
        self.element("error")?.set_attribute("hidden", "")?;
        self.element("status")?
            .set_text_content(Some("Paste a cap, or open a share link."));
        Ok(())
    }

    fn show_error(&self, e: &LafsError) -> Result<(), JsValue> {
        self.element("result")?.set_attribute("hidden", "")?;
        let error = self.element("error")?;
        error.set_attribute("data-code", &e.code())?;
        error.remove_attribute("hidden")?;
        self.element("error-message")?
            .set_text_content(Some(&sentence(&e.message())));
        self.element("status")?.set_text_content(Some(""));
        Ok(())
    }

    fn show_cap(&self, info: &CapInfo) -> Result<(), JsValue> {
        self.element("error")?.set_attribute("hidden", "")?;
        let result = self.element("result")?;
        result.set_attribute("data-kind", &info.kind())?;
        self.element("result-kind")?
            .set_text_content(Some(&sentence_case(&info.kind_name())));
        self.element("result-grants")?
            .set_text_content(Some(&info.grants()));

        let details = self.element("result-details")?;
        details.set_text_content(None);
        if let Some(size) = info.literal_size() {
            self.add_detail(&details, "Size", &format!("{size} bytes"), "literal-size")?;
            let data = info.literal_data().unwrap_or_default();
            let shown = match std::str::from_utf8(&data) {
                Ok(s) if !s.chars().any(char::is_control) => format!("“{s}”"),
                _ => format!("hex {}", hex::encode(&data)),
            };
            self.add_detail(&details, "Contents", &shown, "literal-contents")?;
        }
        if let Some(si) = info.storage_index() {
            self.add_detail(&details, "Storage index", &si, "storage-index")?;
        }
        if let Some(sel) = info.selection_index() {
            self.add_detail(&details, "Server-selection index", &sel, "selection-index")?;
        }
        if info.kind() == "readcap" {
            if let Some(v) = info.verify_cap() {
                self.add_detail(
                    &details,
                    "Verifycap (give this to someone who should check or repair the file \
                     without reading it)",
                    &v,
                    "verify-cap",
                )?;
            }
        }
        result.remove_attribute("hidden")?;
        self.element("status")?.set_text_content(Some(""));
        Ok(())
    }

    fn add_detail(&self, list: &Element, term: &str, value: &str, id: &str) -> Result<(), JsValue> {
        let dt = self.document.create_element("dt")?;
        dt.set_text_content(Some(term));
        let dd = self.document.create_element("dd")?;
        let code = self.document.create_element("code")?;
        code.set_id(id);
        code.set_text_content(Some(value));
        dd.append_child(&code)?;
        list.append_child(&dt)?;
        list.append_child(&dd)?;
        Ok(())
    }
}

/// "immutable readcap" → "Immutable readcap".
fn sentence_case(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// An error message as a sentence: capitalised, ending with a full stop.
fn sentence(s: &str) -> String {
    let s = sentence_case(s);
    if s.ends_with('.') {
        s
    } else {
        format!("{s}.")
    }
}
