/**
 * The KMIP (OASIS KMIP 1.0-1.4) tag and enumeration values the kmip: driver uses. Values are from the
 * KMIP specification's tag and enumeration tables (section 9.1.3); only what keyport sends or reads
 * is listed.
 */

/** Item types (KMIP 9.1.1.2) */
export const ItemType = {
  Structure: 0x01,
  Integer: 0x02,
  LongInteger: 0x03,
  BigInteger: 0x04,
  Enumeration: 0x05,
  Boolean: 0x06,
  TextString: 0x07,
  ByteString: 0x08,
  DateTime: 0x09,
  Interval: 0x0a,
} as const;
export type ItemTypeName = keyof typeof ItemType;
export const ITEM_TYPE_NAME: Record<number, ItemTypeName> = Object.fromEntries(
  Object.entries(ItemType).map(([k, v]) => [v, k as ItemTypeName]),
) as Record<number, ItemTypeName>;

export const Tag = {
  ActivationDate: 0x420001,
  ApplicationData: 0x420002,
  ApplicationNamespace: 0x420003,
  ApplicationSpecificInformation: 0x420004,
  Attribute: 0x420008,
  AttributeIndex: 0x420009,
  AttributeName: 0x42000a,
  AttributeValue: 0x42000b,
  BatchCount: 0x42000d,
  BatchErrorContinuationOption: 0x42000e,
  BatchItem: 0x42000f,
  BlockCipherMode: 0x420011,
  CommonTemplateAttribute: 0x42001f,
  CryptographicAlgorithm: 0x420028,
  CryptographicLength: 0x42002a,
  CryptographicParameters: 0x42002b,
  CryptographicUsageMask: 0x42002c,
  HashingAlgorithm: 0x420038,
  InitialDate: 0x420039,
  IvCounterNonce: 0x42003d,
  KeyBlock: 0x420040,
  KeyCompressionType: 0x420041,
  KeyFormatType: 0x420042,
  KeyMaterial: 0x420043,
  KeyValue: 0x420045,
  MaximumItems: 0x42004f,
  MaximumResponseSize: 0x420050,
  Name: 0x420053,
  NameType: 0x420054,
  NameValue: 0x420055,
  ObjectGroup: 0x420056,
  ObjectType: 0x420057,
  Operation: 0x42005c,
  PaddingMethod: 0x42005f,
  PrivateKey: 0x420064,
  PrivateKeyTemplateAttribute: 0x420065,
  PrivateKeyUniqueIdentifier: 0x420066,
  ProtocolVersion: 0x420069,
  ProtocolVersionMajor: 0x42006a,
  ProtocolVersionMinor: 0x42006b,
  PublicKey: 0x42006d,
  PublicKeyTemplateAttribute: 0x42006e,
  PublicKeyUniqueIdentifier: 0x42006f,
  QueryFunction: 0x420074,
  RequestHeader: 0x420077,
  RequestMessage: 0x420078,
  RequestPayload: 0x420079,
  ResponseHeader: 0x42007a,
  ResponseMessage: 0x42007b,
  ResponsePayload: 0x42007c,
  ResultMessage: 0x42007d,
  ResultReason: 0x42007e,
  ResultStatus: 0x42007f,
  RevocationMessage: 0x420080,
  RevocationReason: 0x420081,
  RevocationReasonCode: 0x420082,
  ServerInformation: 0x420088,
  State: 0x42008d,
  SymmetricKey: 0x42008f,
  TemplateAttribute: 0x420091,
  TimeStamp: 0x420092,
  UniqueBatchItemId: 0x420093,
  UniqueIdentifier: 0x420094,
  VendorIdentification: 0x42009d,
  DigitalSignatureAlgorithm: 0x4200ae,
  Data: 0x4200c2,
  SignatureData: 0x4200c3,
  TagLength: 0x4200ce,
  OffsetItems: 0x4200d4,
  LocatedItems: 0x4200d5,
  AuthenticatedEncryptionAdditionalData: 0x4200fe,
  AuthenticatedEncryptionTag: 0x4200ff,
} as const;

export const Operation = {
  Create: 0x01,
  CreateKeyPair: 0x02,
  Register: 0x03,
  Locate: 0x08,
  Get: 0x0a,
  GetAttributes: 0x0b,
  Activate: 0x12,
  Revoke: 0x13,
  Destroy: 0x14,
  Query: 0x18,
  DiscoverVersions: 0x1e,
  Encrypt: 0x1f,
  Decrypt: 0x20,
  Sign: 0x21,
} as const;
export const OPERATION_NAME: Record<number, string> = Object.fromEntries(Object.entries(Operation).map(([k, v]) => [v, k]));

export const ObjectType = { Certificate: 0x01, SymmetricKey: 0x02, PublicKey: 0x03, PrivateKey: 0x04, SecretData: 0x07 } as const;

export const CryptographicAlgorithm = { AES: 0x03, RSA: 0x04, ECDSA: 0x06, EC: 0x1a } as const;
export const BlockCipherMode = { CBC: 0x01, GCM: 0x09 } as const;
export const PaddingMethod = { None: 0x01, OAEP: 0x02, PKCS5: 0x03, PKCS1v15: 0x08, PSS: 0x0a } as const;
export const HashingAlgorithm = { SHA256: 0x06, SHA384: 0x07 } as const;
export const KeyFormatType = { Raw: 0x01, PKCS1: 0x03, PKCS8: 0x04, X509: 0x05, TransparentSymmetricKey: 0x07 } as const;

export const State = {
  PreActive: 0x01,
  Active: 0x02,
  Deactivated: 0x03,
  Compromised: 0x04,
  Destroyed: 0x05,
  DestroyedCompromised: 0x06,
} as const;

export const ResultStatus = { Success: 0x00, OperationFailed: 0x01, OperationPending: 0x02, OperationUndone: 0x03 } as const;

export const ResultReason = {
  ItemNotFound: 0x01,
  ResponseTooLarge: 0x02,
  AuthenticationNotSuccessful: 0x03,
  InvalidMessage: 0x04,
  OperationNotSupported: 0x05,
  MissingData: 0x06,
  InvalidField: 0x07,
  FeatureNotSupported: 0x08,
  OperationCanceledByRequester: 0x09,
  CryptographicFailure: 0x0a,
  IllegalOperation: 0x0b,
  PermissionDenied: 0x0c,
  ObjectArchived: 0x0d,
  IndexOutOfBounds: 0x0e,
  ApplicationNamespaceNotSupported: 0x0f,
  KeyFormatTypeNotSupported: 0x10,
  KeyCompressionTypeNotSupported: 0x11,
  EncodingOptionError: 0x12,
  KeyValueNotPresent: 0x13,
  AttestationRequired: 0x14,
  AttestationFailed: 0x15,
  Sensitive: 0x16,
  NotExtractable: 0x17,
  ObjectAlreadyExists: 0x18,
  // KMIP 2.0 additions some 1.x servers also send
  UsageLimitExceeded: 0x1a,
  BadCryptographicParameters: 0x24,
  ObjectDestroyed: 0x36,
  ObjectNotFound: 0x37,
  NotAuthorised: 0x39,
  ServerLimitExceeded: 0x3a,
  UnsupportedCryptographicParameters: 0x3e,
  UnsupportedProtocolVersion: 0x3f,
  WrongKeyLifecycleState: 0x43,
  GeneralFailure: 0x100,
} as const;
export const RESULT_REASON_NAME: Record<number, string> = Object.fromEntries(Object.entries(ResultReason).map(([k, v]) => [v, k]));

export const NameType = { UninterpretedTextString: 0x01, Uri: 0x02 } as const;
export const RevocationReasonCode = { Unspecified: 0x01, KeyCompromise: 0x02, CessationOfOperation: 0x06 } as const;
export const QueryFunction = { Operations: 0x01, Objects: 0x02, ServerInformation: 0x03 } as const;

/** Cryptographic Usage Mask bits */
export const UsageMask = { Sign: 0x01, Verify: 0x02, Encrypt: 0x04, Decrypt: 0x08, WrapKey: 0x10, UnwrapKey: 0x20 } as const;
