"""Published worked example for the EKOP PIN fit.

Source: the R package PINstimation (Ghachem & Ersan), vignette "Get started", Example 1:
``pin_ea(dailytrades)`` on the package's ``dailytrades`` data set (60 days of buyer- and
seller-initiated trade counts, data/dailytrades.RData), which prints

    alpha 0.749997, delta 0.133334, mu 1193.52, eps.b 357.27, eps.s 328.63,
    Likelihood (3226.469), PIN 0.566172

(the likelihood is printed as the negative of the log-likelihood, in parentheses). The
counts below were read from the package's .RData file.
"""
BUYS = [357, 926, 1332, 970, 957, 894, 1784, 1880, 1821, 306, 355, 1887, 906, 1826, 311, 925,
        1903, 353, 1804, 1892, 332, 971, 1809, 1840, 334, 1875, 1788, 313, 267, 1853, 1776, 1870,
        334, 989, 317, 909, 1837, 1862, 350, 332, 336, 1793, 376, 1857, 1823, 1834, 1877, 1905,
        1837, 1909, 976, 1853, 357, 327, 352, 1832, 1824, 340, 363, 347]
SELLS = [341, 352, 329, 337, 335, 349, 357, 354, 371, 312, 352, 331, 340, 354, 1310, 374, 311,
         350, 343, 352, 342, 316, 326, 362, 338, 358, 314, 351, 295, 343, 325, 295, 1326, 322,
         327, 333, 339, 328, 874, 1816, 363, 305, 353, 344, 338, 307, 308, 291, 341, 325, 346,
         332, 355, 986, 330, 336, 333, 931, 352, 337]
EXPECTED = {"alpha": 0.749997, "delta": 0.133334, "mu": 1193.52, "eps_b": 357.27,
            "eps_s": 328.63, "loglik": -3226.469, "pin": 0.566172}
