-- What the replaced system's order object shows that this schema did not keep: the
-- product's unit, data and days as Unitel listed them (productUnit, productData,
-- productDays). Orders placed before this migration show them as null.
ALTER TABLE orders
    ADD COLUMN product_unit INTEGER,
    ADD COLUMN product_data TEXT,
    ADD COLUMN product_days INTEGER;

-- Orders brought over from the replaced system by `payment-api import-legacy`: when. A
-- payment the replaced system started at WeChat is continued with the parameters it used
-- (its `attach`), which WeChat requires of a second unifiedOrder for the same order.
ALTER TABLE orders ADD COLUMN imported_at TIMESTAMPTZ;
