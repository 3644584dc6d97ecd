-- rerank.transport.sigv4 against AWS's published SigV4 test vectors (aws-sig-v4-test-suite).
local sigv4 = require "rerank.transport.sigv4"

local CREDS = "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
local T = 1440938160 -- 20150830T123600Z

describe("rerank.transport.sigv4", function()
  if not sigv4.available() then
    pending("no libcrypto reachable through the FFI")
    return
  end

  local function sign(o)
    o.host = o.host or "example.amazonaws.com"
    o.aws_sigv4 = o.aws_sigv4 or "aws:amz:us-east-1:service"
    o.userpwd = o.userpwd or CREDS
    o.time = T
    return sigv4.sign(o)
  end

  it("get-vanilla", function()
    local h = assert(sign({ method = "GET", path = "/" }))
    assert.are.equal("20150830T123600Z", h["x-amz-date"])
    assert.are.equal("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
      .. "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
      h.authorization)
  end)

  it("get-vanilla-query-order-key-case (query sorted)", function()
    local h = assert(sign({ method = "GET", path = "/?Param2=value2&Param1=value1" }))
    assert.truthy(h.authorization:find("Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500$"))
  end)

  it("signs content-type and x-amz-* headers, and the body", function()
    local a = assert(sign({ method = "POST", path = "/", body = "{}",
                            headers = { ["Content-Type"] = "application/json", ["X-Amz-Security-Token"] = " t  k ",
                                        ["X-Other"] = "not signed" } }))
    assert.truthy(a.authorization:find("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,", 1, true))
    local b = assert(sign({ method = "POST", path = "/", body = "{ }",
                            headers = { ["Content-Type"] = "application/json", ["X-Amz-Security-Token"] = "t k" } }))
    assert.are_not.equal(a.authorization, b.authorization)
  end)

  it("takes region and service from the host when aws_sigv4 has none, and refuses bad input", function()
    local h = assert(sign({ method = "GET", path = "/", host = "bedrock.eu-west-1.amazonaws.com", aws_sigv4 = "aws:amz" }))
    assert.truthy(h.authorization:find("/20150830/eu-west-1/bedrock/aws4_request", 1, true))
    local ok, err = sign({ method = "GET", path = "/", host = "example.com", aws_sigv4 = "aws:amz" })
    assert.is_nil(ok)
    assert.truthy(err:find("region", 1, true))
    ok, err = sign({ method = "GET", path = "/", userpwd = "nokey" })
    assert.is_nil(ok)
    assert.truthy(err:find("userpwd", 1, true))
  end)
end)
