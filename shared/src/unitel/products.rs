//! `/service/servicetype` (what a number may buy) and `/service/unitel` (postpaid bill).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// One product as Unitel lists it. Prices are whole tugrik.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub code: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub eng_name: String,
    #[serde(deserialize_with = "integer_or_digits")]
    pub price: i64,
    #[serde(default)]
    pub short_name: String,
    #[serde(default)]
    pub unit: Option<i64>,
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub days: Option<i64>,
}

/// Products under one heading (`day`, `noday`, `special`, `data`, `entertainment`...).
pub type ProductGroup = BTreeMap<String, Vec<Product>>;

/// A subscriber's tariff and the products it may buy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceType {
    /// Unitel's answer as received: the mini-program reads it as it is.
    pub raw: serde_json::Value,
    pub servicetype: String,
    pub tariff_name: String,
    pub bill_type: String,
    /// Voice/unit cards, bought with `/service/recharge`.
    pub cards: ProductGroup,
    /// Data packages, bought with `/service/datapackage`.
    pub data: ProductGroup,
}

impl ServiceType {
    pub fn is_postpaid(&self) -> bool {
        self.bill_type.eq_ignore_ascii_case("postpaid")
            || self.servicetype.eq_ignore_ascii_case("post")
    }

    pub fn find_card(&self, code: &str) -> Option<&Product> {
        find(&self.cards, code)
    }

    pub fn find_data_package(&self, code: &str) -> Option<&Product> {
        find(&self.data, code)
    }

    /// Parses Unitel's answer, skipping (and logging) single products it cannot read rather
    /// than refusing the whole list: the shape is undocumented.
    pub(crate) fn from_response(body: &serde_json::Value) -> Option<Self> {
        let text = |key: &str| {
            body.get(key)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        let service = body.get("service")?;
        Some(ServiceType {
            raw: body.clone(),
            servicetype: text("servicetype"),
            tariff_name: text("name"),
            bill_type: text("billtype"),
            cards: groups(service.get("cards")),
            data: groups(service.get("data")),
        })
    }
}

fn find<'a>(groups: &'a ProductGroup, code: &str) -> Option<&'a Product> {
    groups.values().flatten().find(|p| p.code == code)
}

fn groups(value: Option<&serde_json::Value>) -> ProductGroup {
    let Some(serde_json::Value::Object(map)) = value else {
        return ProductGroup::new();
    };
    map.iter()
        .filter_map(|(group, items)| {
            let items = items.as_array()?;
            let products = items
                .iter()
                .filter_map(|item| match Product::deserialize(item) {
                    Ok(p) if p.price > 0 && !p.code.is_empty() => Some(p),
                    Ok(_) | Err(_) => {
                        tracing::warn!(group, %item, "skipping a Unitel product that cannot be read");
                        None
                    }
                })
                .collect();
            Some((group.clone(), products))
        })
        .collect()
}

/// A postpaid subscriber's bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostpaidBill {
    /// Unitel's answer as received: the mini-program reads it as it is.
    #[serde(skip)]
    pub raw: serde_json::Value,
    #[serde(default, deserialize_with = "integer_or_digits")]
    pub invoice_amount: i64,
    #[serde(default, deserialize_with = "integer_or_digits")]
    pub remain_amount: i64,
    #[serde(default)]
    pub invoice_date: String,
    #[serde(deserialize_with = "integer_or_digits")]
    pub total_unpaid: i64,
    #[serde(default, deserialize_with = "integer_or_digits")]
    pub invoice_unpaid: i64,
    #[serde(default)]
    pub invoice_status: String,
}

fn integer_or_digits<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) => Ok(n),
        Raw::Text(s) if s.trim().is_empty() => Ok(0),
        Raw::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a whole number"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_recorded_product_list() {
        let body: serde_json::Value = serde_json::from_str(
            r#"{"servicetype":"PREPAID","name":"Smart Data Unlimited","billtype":"prepaid","result":"success",
                "service":{"cards":{"day":[{"code":"SD5000","data":"3GB","days":5,"eng_name":"1000 unit","name":"1000 нэгж","price":5000,"short_name":"1000/5D-5000","unit":1000},
                                            {"code":"BAD","price":"abc"}],"special":[]},
                           "name":"Smart-data",
                           "data":{"data":[{"code":"data3gb2d","data":"3GB","days":2,"eng_name":"3 GB","name":"3 GB","price":"3500","short_name":"3GB"}]}}}"#,
        )
        .unwrap();
        let st = ServiceType::from_response(&body).unwrap();
        assert!(!st.is_postpaid());
        assert_eq!(st.find_card("SD5000").unwrap().price, 5000);
        assert!(st.find_card("BAD").is_none());
        assert_eq!(st.find_data_package("data3gb2d").unwrap().price, 3500);
        assert!(st.find_card("data3gb2d").is_none());
    }
}
