// SPDX-License-Identifier: Apache-2.0
// okai ProvenanceRegistry, record format v1.
pragma solidity 0.8.28;

/// @title The okai provenance registry: interface, types, errors and events
/// @notice Maps SHA-256 digests (as bytes32) of worker images and trained models to the digests
/// of everything that produced them. Records are write-once: nobody, not even the account that
/// wrote a record, can change or delete it. There is no owner and no upgrade path.
/// @dev Every record is readable through `view` functions, so verifiers never scan logs (public
/// Flare RPCs cap `eth_getLogs` at 30 blocks). Events exist for indexers only.
interface IProvenanceRegistry {
    /// @notice A registered worker image.
    /// @param systemToplevel SHA-256 of the UTF-8 NixOS system toplevel store path of the image.
    /// @param manifestBlobId Raw 32 bytes of the Walrus blob ID of the image manifest.
    /// @param registrant The account that registered the image.
    /// @param registeredAt Timestamp of the block that registered it.
    struct Image {
        bytes32 systemToplevel;
        bytes32 manifestBlobId;
        address registrant;
        uint64 registeredAt;
    }

    /// @notice The provenance record of a trained model.
    /// @param imageDigest SHA-256 of the worker image, or zero for an unregistered host.
    /// @param datasetManifestDigests SHA-256 of each dataset manifest (or raw data) in job order.
    /// @param jobDigest SHA-256 of the canonical okai.job/v1 document.
    /// @param attestationDigest SHA-256 of the canonical in-toto attestation.
    /// @param attestationBlobId Raw 32 bytes of the Walrus blob ID of the attestation.
    /// @param submitter The account that recorded the model.
    /// @param recordedAt Timestamp of the block that recorded it.
    struct Model {
        bytes32 imageDigest;
        bytes32[] datasetManifestDigests;
        bytes32 jobDigest;
        bytes32 attestationDigest;
        bytes32 attestationBlobId;
        address submitter;
        uint64 recordedAt;
    }

    /// @notice `imageDigest` is already registered; image records are write-once.
    error ProvenanceRegistryImageExists(bytes32 imageDigest);

    /// @notice `imageDigest` is not registered (and is not the zero digest of an unregistered host).
    error ProvenanceRegistryImageNotRegistered(bytes32 imageDigest);

    /// @notice `modelDigest` is already recorded; model records are write-once.
    error ProvenanceRegistryModelExists(bytes32 modelDigest);

    /// @notice `modelDigest` has no record.
    error ProvenanceRegistryModelNotRecorded(bytes32 modelDigest);

    /// @notice The argument `field` is zero (or empty) but must be set.
    error ProvenanceRegistryMissingField(string field);

    /// @notice A model lists `count` datasets; at most `maximum` are accepted.
    error ProvenanceRegistryTooManyDatasets(uint256 count, uint256 maximum);

    /// @notice `witness` submitted `modelDigest`, so it cannot also witness its reproduction.
    error ProvenanceRegistryWitnessIsSubmitter(bytes32 modelDigest, address witness);

    /// @notice `witness` has already attested a reproduction of `modelDigest`.
    error ProvenanceRegistryAlreadyWitnessed(bytes32 modelDigest, address witness);

    /// @notice Writing the record's data contract failed.
    error ProvenanceRegistryStorageFailed(bytes32 modelDigest);

    /// @notice An image was registered.
    event ImageRegistered(
        bytes32 indexed imageDigest,
        address indexed registrant,
        bytes32 systemToplevel,
        bytes32 manifestBlobId
    );

    /// @notice A model was recorded; the fields are those `getModel` returns.
    event ModelRecorded(
        bytes32 indexed modelDigest,
        bytes32 indexed imageDigest,
        address indexed submitter,
        bytes32[] datasetManifestDigests,
        bytes32 jobDigest,
        bytes32 attestationDigest,
        bytes32 attestationBlobId
    );

    /// @notice `witness` re-trained `modelDigest` and obtained the same bytes.
    event ReproductionAttested(bytes32 indexed modelDigest, address indexed witness);

    /// @notice Register a worker image, once.
    /// @param imageDigest SHA-256 of the image file; must not be zero.
    /// @param systemToplevel SHA-256 of the UTF-8 system toplevel store path; must not be zero.
    /// @param manifestBlobId Raw bytes of the image manifest's Walrus blob ID; must not be zero.
    function registerImage(bytes32 imageDigest, bytes32 systemToplevel, bytes32 manifestBlobId)
        external;

    /// @notice Record the provenance of a trained model, once.
    /// @param modelDigest SHA-256 of the model file; must not be zero.
    /// @param imageDigest A registered image, or zero when the host ran no registered image.
    /// @param datasetManifestDigests One to `MAX_DATASETS` non-zero dataset digests.
    /// @param jobDigest SHA-256 of the canonical job document; must not be zero.
    /// @param attestationDigest SHA-256 of the canonical attestation; must not be zero.
    /// @param attestationBlobId Raw bytes of the attestation's Walrus blob ID; must not be zero.
    function recordModel(
        bytes32 modelDigest,
        bytes32 imageDigest,
        bytes32[] calldata datasetManifestDigests,
        bytes32 jobDigest,
        bytes32 attestationDigest,
        bytes32 attestationBlobId
    ) external;

    /// @notice Witness that the caller re-trained `modelDigest` and obtained identical bytes.
    /// @dev One witness per account per model; the submitter cannot witness its own model.
    /// @param modelDigest A recorded model.
    function attestReproduction(bytes32 modelDigest) external;

    /// @notice The record of a registered image; reverts if it is not registered.
    /// @param imageDigest SHA-256 of the image file.
    /// @return image The image record.
    function getImage(bytes32 imageDigest) external view returns (Image memory image);

    /// @notice Whether `imageDigest` is registered.
    /// @param imageDigest SHA-256 of the image file.
    /// @return registered True once the image is registered.
    function isRegistered(bytes32 imageDigest) external view returns (bool registered);

    /// @notice The record of a model; reverts if it is not recorded.
    /// @param modelDigest SHA-256 of the model file.
    /// @return model Every field of the record.
    function getModel(bytes32 modelDigest) external view returns (Model memory model);

    /// @notice Whether `modelDigest` is recorded.
    /// @param modelDigest SHA-256 of the model file.
    /// @return recorded True once the model is recorded.
    function isRecorded(bytes32 modelDigest) external view returns (bool recorded);

    /// @notice The accounts that witnessed a reproduction of `modelDigest`, in order.
    /// @dev Reverts if the model is not recorded.
    /// @param modelDigest SHA-256 of the model file.
    /// @return witnesses The witnessing accounts.
    function getWitnesses(bytes32 modelDigest) external view returns (address[] memory witnesses);

    /// @notice Whether `account` witnessed a reproduction of `modelDigest`.
    /// @param modelDigest SHA-256 of the model file.
    /// @param account The account asked about.
    /// @return witnessed True if `account` attested a reproduction.
    function hasWitnessed(bytes32 modelDigest, address account)
        external
        view
        returns (bool witnessed);

    /// @notice Everything a verifier needs in one call: the model, its image and its witnesses.
    /// @dev Reverts if the model is not recorded; `image` is all zero for an unregistered host.
    /// @param modelDigest SHA-256 of the model file.
    /// @return model The model record.
    /// @return image The record of `model.imageDigest`, or zero.
    /// @return witnesses The accounts that witnessed a reproduction.
    function getProvenance(bytes32 modelDigest)
        external
        view
        returns (Model memory model, Image memory image, address[] memory witnesses);
}

/// @title The okai provenance registry
/// @notice Write-once records of worker images and trained models, plus reproduction witnesses.
/// @dev A model record is immutable data, so it is stored as the code of a small data contract
/// (the SSTORE2 pattern) and only that contract's address goes into storage: deploying code
/// costs 200 gas a byte against 22,100 gas for each fresh 32-byte storage slot. The data
/// contract's code is 0x00 (STOP, so calling it does nothing) followed by the packed record:
/// imageDigest, jobDigest, attestationDigest, attestationBlobId (32 bytes each), submitter
/// (20 bytes), recordedAt (8 bytes), then the dataset digests (32 bytes each).
contract ProvenanceRegistry is IProvenanceRegistry {
    /// @notice The most dataset digests one model record may list.
    uint256 public constant MAX_DATASETS = 64;

    /// @dev Byte offsets in a data contract's code: STOP (1), four bytes32 (128), submitter
    /// (20), recordedAt (8), then the datasets. Literals, as inline assembly reads them.
    uint256 private constant _SUBMITTER_OFFSET = 129;
    uint256 private constant _DATASETS_OFFSET = 157;

    mapping(bytes32 imageDigest => Image) private _images;
    mapping(bytes32 modelDigest => address data) private _models;
    mapping(bytes32 modelDigest => address[]) private _witnesses;
    mapping(bytes32 modelDigest => mapping(address account => bool)) private _witnessed;

    /// @inheritdoc IProvenanceRegistry
    function registerImage(bytes32 imageDigest, bytes32 systemToplevel, bytes32 manifestBlobId)
        external
    {
        if (imageDigest == 0) revert ProvenanceRegistryMissingField("imageDigest");
        if (systemToplevel == 0) revert ProvenanceRegistryMissingField("systemToplevel");
        if (manifestBlobId == 0) revert ProvenanceRegistryMissingField("manifestBlobId");
        if (_images[imageDigest].registrant != address(0)) {
            revert ProvenanceRegistryImageExists(imageDigest);
        }
        _images[imageDigest] = Image({
            systemToplevel: systemToplevel,
            manifestBlobId: manifestBlobId,
            registrant: msg.sender,
            registeredAt: uint64(block.timestamp)
        });
        emit ImageRegistered(imageDigest, msg.sender, systemToplevel, manifestBlobId);
    }

    /// @inheritdoc IProvenanceRegistry
    function recordModel(
        bytes32 modelDigest,
        bytes32 imageDigest,
        bytes32[] calldata datasetManifestDigests,
        bytes32 jobDigest,
        bytes32 attestationDigest,
        bytes32 attestationBlobId
    ) external {
        if (modelDigest == 0) revert ProvenanceRegistryMissingField("modelDigest");
        if (_models[modelDigest] != address(0)) revert ProvenanceRegistryModelExists(modelDigest);
        if (imageDigest != 0 && _images[imageDigest].registrant == address(0)) {
            revert ProvenanceRegistryImageNotRegistered(imageDigest);
        }
        _checkDatasets(datasetManifestDigests);
        if (jobDigest == 0) revert ProvenanceRegistryMissingField("jobDigest");
        if (attestationDigest == 0) revert ProvenanceRegistryMissingField("attestationDigest");
        if (attestationBlobId == 0) revert ProvenanceRegistryMissingField("attestationBlobId");

        bytes memory record = abi.encodePacked(
            imageDigest,
            jobDigest,
            attestationDigest,
            attestationBlobId,
            msg.sender,
            uint64(block.timestamp),
            datasetManifestDigests
        );
        address data = _writeData(record);
        if (data == address(0)) revert ProvenanceRegistryStorageFailed(modelDigest);
        _models[modelDigest] = data;
        emit ModelRecorded(
            modelDigest,
            imageDigest,
            msg.sender,
            datasetManifestDigests,
            jobDigest,
            attestationDigest,
            attestationBlobId
        );
    }

    /// @inheritdoc IProvenanceRegistry
    function attestReproduction(bytes32 modelDigest) external {
        address data = _models[modelDigest];
        if (data == address(0)) revert ProvenanceRegistryModelNotRecorded(modelDigest);
        if (_submitter(data) == msg.sender) {
            revert ProvenanceRegistryWitnessIsSubmitter(modelDigest, msg.sender);
        }
        if (_witnessed[modelDigest][msg.sender]) {
            revert ProvenanceRegistryAlreadyWitnessed(modelDigest, msg.sender);
        }
        _witnessed[modelDigest][msg.sender] = true;
        _witnesses[modelDigest].push(msg.sender);
        emit ReproductionAttested(modelDigest, msg.sender);
    }

    /// @inheritdoc IProvenanceRegistry
    function getImage(bytes32 imageDigest) external view returns (Image memory image) {
        image = _images[imageDigest];
        if (image.registrant == address(0)) revert ProvenanceRegistryImageNotRegistered(imageDigest);
    }

    /// @inheritdoc IProvenanceRegistry
    function isRegistered(bytes32 imageDigest) external view returns (bool registered) {
        registered = _images[imageDigest].registrant != address(0);
    }

    /// @inheritdoc IProvenanceRegistry
    function getModel(bytes32 modelDigest) external view returns (Model memory model) {
        model = _readModel(modelDigest);
    }

    /// @inheritdoc IProvenanceRegistry
    function isRecorded(bytes32 modelDigest) external view returns (bool recorded) {
        recorded = _models[modelDigest] != address(0);
    }

    /// @inheritdoc IProvenanceRegistry
    function getWitnesses(bytes32 modelDigest) external view returns (address[] memory witnesses) {
        if (_models[modelDigest] == address(0)) revert ProvenanceRegistryModelNotRecorded(modelDigest);
        witnesses = _witnesses[modelDigest];
    }

    /// @inheritdoc IProvenanceRegistry
    function hasWitnessed(bytes32 modelDigest, address account)
        external
        view
        returns (bool witnessed)
    {
        witnessed = _witnessed[modelDigest][account];
    }

    /// @inheritdoc IProvenanceRegistry
    function getProvenance(bytes32 modelDigest)
        external
        view
        returns (Model memory model, Image memory image, address[] memory witnesses)
    {
        model = _readModel(modelDigest);
        image = _images[model.imageDigest];
        witnesses = _witnesses[modelDigest];
    }

    /// @dev Reject an empty or oversized dataset list and zero digests in it.
    function _checkDatasets(bytes32[] calldata digests) private pure {
        uint256 count = digests.length;
        if (count == 0) revert ProvenanceRegistryMissingField("datasetManifestDigests");
        if (count > MAX_DATASETS) revert ProvenanceRegistryTooManyDatasets(count, MAX_DATASETS);
        for (uint256 i = 0; i < count; ++i) {
            if (digests[i] == 0) revert ProvenanceRegistryMissingField("datasetManifestDigests");
        }
    }

    /// @dev Deploy a data contract whose code is 0x00 followed by `record`; zero on failure.
    function _writeData(bytes memory record) private returns (address data) {
        // Init code: PUSH2 size, DUP1, PUSH1 10, RETURNDATASIZE, CODECOPY, RETURNDATASIZE,
        // RETURN, i.e. return the code after these 10 bytes, which starts with the STOP byte.
        bytes memory initCode =
            abi.encodePacked(hex"61", uint16(record.length + 1), hex"80600a3d393df300", record);
        assembly ("memory-safe") {
            data := create(0, add(initCode, 0x20), mload(initCode))
        }
    }

    /// @dev Decode a model record from its data contract; reverts if it is not recorded.
    function _readModel(bytes32 modelDigest) private view returns (Model memory model) {
        address data = _models[modelDigest];
        if (data == address(0)) revert ProvenanceRegistryModelNotRecorded(modelDigest);
        uint256 count = (data.code.length - _DATASETS_OFFSET) / 32;
        bytes32[] memory datasets = new bytes32[](count);
        bytes32 imageDigest;
        bytes32 jobDigest;
        bytes32 attestationDigest;
        bytes32 attestationBlobId;
        address submitter;
        uint64 recordedAt;
        assembly ("memory-safe") {
            let header := mload(0x40)
            extcodecopy(data, header, 1, 156)
            imageDigest := mload(header)
            jobDigest := mload(add(header, 0x20))
            attestationDigest := mload(add(header, 0x40))
            attestationBlobId := mload(add(header, 0x60))
            submitter := shr(96, mload(add(header, 0x80)))
            recordedAt := shr(192, mload(add(header, 0x94)))
            extcodecopy(data, add(datasets, 0x20), _DATASETS_OFFSET, mul(count, 0x20))
        }
        model = Model({
            imageDigest: imageDigest,
            datasetManifestDigests: datasets,
            jobDigest: jobDigest,
            attestationDigest: attestationDigest,
            attestationBlobId: attestationBlobId,
            submitter: submitter,
            recordedAt: recordedAt
        });
    }

    /// @dev The submitter stored in a model's data contract.
    function _submitter(address data) private view returns (address submitter) {
        assembly ("memory-safe") {
            let scratch := mload(0x40)
            extcodecopy(data, scratch, _SUBMITTER_OFFSET, 20)
            submitter := shr(96, mload(scratch))
        }
    }
}
