//! Filter expressions anyone who reaches the console's X-Ray API may send (`GetTraceSummaries`'
//! `FilterExpression`, `GetTimeSeriesServiceStatistics`' `EntitySelectorExpression`): any text is
//! parsed or refused without panicking, within bounded depth, and a refusal points inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xray_console::filter_expression::{Entity, Expr};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let chars = text.chars().count();
    match Expr::parse(text) {
        Ok(parsed) => assert_eq!(Expr::parse(text).ok(), Some(parsed), "parsing is deterministic"),
        Err(e) => assert!(e.position <= chars, "{e} points past the text ({chars} characters)"),
    }
    if let Err(e) = Entity::parse(text) {
        assert!(e.position <= chars, "{e} points past the text");
    }
});
