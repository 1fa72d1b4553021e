"""Tests of the live Binance feed against a fake exchange on 127.0.0.1 (never the internet)."""
