"""The S3 endpoint's one error table: every S3 error code it answers with and its status, and
which store exception maps to which code. docs/s3.md lists the same table."""

from __future__ import annotations

from tornado.web import HTTPError

from ..store import errors

# code -> (status, default message)
CODES: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "Access Denied"),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed"),
    "AuthorizationQueryParametersError": (400, "The presigned URL's X-Amz-* parameters are malformed"),
    "BadDigest": (400, "The checksum sent does not match the bytes received; nothing is stored"),
    "BucketAlreadyOwnedByYou": (409, "The bucket already exists and is yours"),
    "BucketNotEmpty": (409, "The bucket is not empty"),
    "EntityTooLarge": (400, "The object is larger than the bucket or the service takes"),
    "EntityTooSmall": (400, "A part other than the last is under 5 MiB"),
    "IncompleteBody": (400, "The body is shorter (or longer) than it said"),
    "InsufficientStorage": (507, "There is no room to store the object; nothing is stored"),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "InvalidAccessKeyId": (403, "The access key id is not known"),
    "InvalidArgument": (400, "Invalid argument"),
    "InvalidBucketName": (400, "The bucket name is not valid"),
    "InvalidChunkSizeError": (400, "A chunk of the aws-chunked body is malformed"),
    "InvalidDigest": (400, "The checksum header is malformed"),
    "InvalidObjectState": (409, "The object's stored bytes are damaged; upload it again"),
    "InvalidPart": (400, "A part was not found or its ETag does not match"),
    "InvalidPartOrder": (400, "The parts are not in ascending order"),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InvalidRequest": (400, "Invalid request"),
    "KeyConflict": (409, "A file stands where the key needs a folder, or the reverse"),
    "MalformedXML": (400, "The XML body is malformed"),
    "MethodNotAllowed": (405, "The method is not allowed against this resource"),
    "MissingContentLength": (411, "Content-Length is required"),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "NoSuchKey": (404, "The specified key does not exist"),
    "NoSuchUpload": (404, "The specified multipart upload does not exist"),
    "NotImplemented": (501, "This operation is not implemented by this S3 endpoint"),
    "OperationAborted": (409, "A conflicting operation is in progress on this object; try again"),
    "PreconditionFailed": (412, "At least one of the preconditions you specified did not hold"),
    "RequestTimeTooSkewed": (403, "The request's time is too far from the server's time"),
    "ServiceUnavailable": (503, "The storage cannot be used now; try again"),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match yours"),
    "XAmzContentSHA256Mismatch": (400, "The body does not match x-amz-content-sha256; nothing is stored"),
}

# Store exceptions -> S3 codes; the most specific class listed wins.
EXCEPTIONS: dict[type[Exception], str] = {
    errors.InvalidName: "InvalidBucketName",
    errors.InvalidKey: "InvalidArgument",
    errors.BucketNotFound: "NoSuchBucket",
    errors.FileNotFound: "NoSuchKey",
    errors.Conflict: "KeyConflict",
    errors.PreconditionFailed: "PreconditionFailed",
    errors.FileChanged: "ServiceUnavailable",
    errors.Damaged: "InvalidObjectState",
    errors.BadDigest: "BadDigest",
    errors.TooLarge: "EntityTooLarge",
    errors.TypeNotAllowed: "InvalidArgument",
    errors.InsufficientStorage: "InsufficientStorage",
    errors.Unavailable: "ServiceUnavailable",
}
for _name, _code in (
    ("NoSuchUpload", "NoSuchUpload"),
    ("InvalidPart", "InvalidPart"),
    ("Locked", "OperationAborted"),
):
    if hasattr(errors, _name):  # the staging errors, once the store has them
        EXCEPTIONS[getattr(errors, _name)] = _code


class S3Error(HTTPError):
    """An S3 error answer: a code of CODES (its status follows) and a message; `extra` adds
    elements to the XML (such as <Region> or <Condition>). An HTTPError, so that Tornado answers
    it without logging it as a fault."""

    def __init__(self, code: str, message: str | None = None, **extra: str) -> None:
        status, default = CODES[code]
        super().__init__(status)
        self.code = code
        self.status = status
        self.message = message or default
        self.extra = extra


def s3_error(exc: BaseException) -> S3Error | None:
    """The S3 answer for an exception a client caused or can act on; None for a server fault."""
    if isinstance(exc, S3Error):
        return exc
    for cls in type(exc).__mro__:
        if cls in EXCEPTIONS:
            return S3Error(EXCEPTIONS[cls], str(exc))
    return None
