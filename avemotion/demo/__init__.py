"""Demo corpora: small synthetic CREMA-D, eNTERFACE'05 and MAFW look-alikes for the default run."""
