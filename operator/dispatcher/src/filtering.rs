//! Evaluating compiled filters against a stored event: one Trigger's (delivery of a
//! copy routed under older filters, backfill) or all of a Broker's at once (routing).

use herald_cloudevents::CloudEvent;
use herald_filter::CompiledFilter;

/// Whether `event` passes `filter`. The JSON data is parsed only when the filter
/// looks at it.
#[must_use]
pub fn matches(filter: &CompiledFilter, event: &CloudEvent) -> bool {
    let data = filter.needs_data().then(|| parse_data(event)).flatten();
    filter.matches(&view(event, data.as_ref()))
}

/// The event's data as JSON, if it is JSON.
#[must_use]
pub fn parse_data(event: &CloudEvent) -> Option<serde_json::Value> {
    event
        .data
        .as_deref()
        .and_then(|d| serde_json::from_slice(d).ok())
}

/// The filter engine's view of `event`, borrowing from it.
#[must_use]
pub fn view<'a>(
    event: &'a CloudEvent,
    data: Option<&'a serde_json::Value>,
) -> herald_filter::Event<'a> {
    let mut view = herald_filter::Event::new(
        event.id(),
        event.source(),
        event.get("specversion").unwrap_or("1.0"),
        event.type_(),
    );
    for (name, value) in event.attributes() {
        view = match name {
            "id" | "source" | "specversion" | "type" => view,
            "subject" => view.with_subject(value),
            "time" => view.with_time(value),
            "datacontenttype" => view.with_datacontenttype(value),
            "dataschema" => view.with_dataschema(value),
            _ => view.with_extension(name, value),
        };
    }
    view.set_data(data);
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_extensions_and_data_reach_the_filter() {
        let mut e = CloudEvent::new("1", "shop/eu", "order.created");
        e.set("tenant", "acme");
        e.set("datacontenttype", "application/json");
        e.data = Some(bytes::Bytes::from_static(br#"{"amount": 150}"#));
        let f = |v: serde_json::Value| CompiledFilter::from_filter(&v).unwrap();
        assert!(matches(
            &f(serde_json::json!({"cesql": "source LIKE 'shop/%' AND tenant = 'acme'"})),
            &e
        ));
        assert!(matches(
            &f(serde_json::json!({"pattern": {"data": {"amount": [{"numeric": [">", 100]}]}}})),
            &e
        ));
        assert!(!matches(
            &f(serde_json::json!({"pattern": {"data": {"amount": [{"numeric": ["<", 100]}]}}})),
            &e
        ));
        assert!(!matches(
            &f(serde_json::json!({"exact": {"tenant": "other"}})),
            &e
        ));
    }
}
