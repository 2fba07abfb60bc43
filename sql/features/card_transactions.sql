-- Derived features for card_transactions, applied after the window aggregates.
-- {features} is the table so far: one row per event with the passthrough columns and every
-- declared window aggregate. Use only columns of the same row: anything that needs other events
-- belongs in an entity aggregate, which is point-in-time correct by construction.
-- Divide by doubles, not decimal literals: Spark types 30.0 as DECIMAL(3,1) and rounds the quotient to 6
-- decimal places (up to 3e-6 relative error).
SELECT
  *,
  -- ratios against the entity's own history (null when there is no history)
  amount / NULLIF(customer_mean_amount_30d, 0)                  AS amount_to_customer_mean_30d,
  amount / NULLIF(customer_max_amount_30d, 0)                   AS amount_to_customer_max_30d,
  amount / NULLIF(merchant_mean_amount_30d, 0)                  AS amount_to_merchant_mean_30d,
  customer_count_24h / NULLIF(customer_count_30d / CAST(30 AS DOUBLE), 0) AS customer_count_24h_to_daily_30d,
  customer_sum_amount_24h / NULLIF(customer_sum_amount_30d, 0)  AS customer_sum_24h_share_30d,
  customer_category_count_30d / NULLIF(customer_count_30d, 0)   AS customer_category_share_30d,
  -- categorical encodings
  CAST(country <> customer_country AS INT)                      AS is_foreign,
  CAST(card_present AS INT)                                     AS card_present_flag,
  CAST(channel = 'ecom' AS INT)                                 AS channel_ecom,
  CAST(channel = 'pos' AS INT)                                  AS channel_pos,
  CAST(channel = 'atm' AS INT)                                  AS channel_atm,
  CAST(device_id IS NULL AS INT)                                AS no_device,
  CAST(customer_device_count_30d = 0 AS INT)                    AS new_device_for_customer,
  HOUR(event_time)                                              AS hour_of_day,
  DAYOFWEEK(event_time)                                         AS day_of_week
FROM {features}
