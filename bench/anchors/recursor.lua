-- PowerDNS Recursor Lua config: the benchmark blocklist as an RPZ file.
rpzFile("${rpz}", {policyName="bench"})
