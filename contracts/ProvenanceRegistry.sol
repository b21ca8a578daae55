// SPDX-License-Identifier: Apache-2.0
// okai ProvenanceRegistry, record format v2.
pragma solidity 0.8.28;

/// @title The okai provenance registry: interface, types, errors and events
/// @notice Claims about SHA-256 digests (as bytes32) of worker images and trained models, each
/// belonging to the account that made it. An image claim is keyed by (image digest, publisher)
/// and a model claim by (model digest, submitter): one account's claim never blocks or changes
/// another's, and each claim is write-once. There is no owner and no upgrade path. Whom to
/// believe is the verifier's trust policy, not the registry's (docs/trust-model.md).
/// @dev Every read is a `view` function, and every list is read in pages of at most
/// `MAX_PAGE` entries, so a verifier's cost is bounded whatever others write. Verifiers never
/// scan logs (public Flare RPCs cap `eth_getLogs` at 30 blocks); events exist for indexers.
interface IProvenanceRegistry {
    /// @notice One account's claim about a worker image.
    /// @param systemToplevel SHA-256 of the UTF-8 NixOS system toplevel store path of the image.
    /// @param manifestBlobId Raw 32 bytes of the Walrus blob ID of the image manifest.
    /// @param manifestSha256 SHA-256 of the image manifest's bytes, as stored on Walrus.
    /// @param publisher The account that made the claim.
    /// @param registeredAt Timestamp of the block that registered it.
    struct Image {
        bytes32 systemToplevel;
        bytes32 manifestBlobId;
        bytes32 manifestSha256;
        address publisher;
        uint64 registeredAt;
    }

    /// @notice One account's provenance claim about a trained model.
    /// @param imageDigest SHA-256 of the worker image, or zero for an unregistered host.
    /// @param datasetManifestDigests SHA-256 of each dataset manifest (or raw data) in job order.
    /// @param jobDigest SHA-256 of the canonical okai.job/v1 document.
    /// @param attestationDigest SHA-256 of the canonical in-toto attestation.
    /// @param attestationBlobId Raw 32 bytes of the Walrus blob ID of the attestation.
    /// @param submitter The account that made the claim.
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

    /// @notice `publisher` already registered `imageDigest`; each claim is write-once.
    error ProvenanceRegistryImageExists(bytes32 imageDigest, address publisher);

    /// @notice `publisher` made no claim about `imageDigest` (zero publisher: nobody did).
    error ProvenanceRegistryImageNotRegistered(bytes32 imageDigest, address publisher);

    /// @notice `submitter` already recorded `modelDigest`; each claim is write-once.
    error ProvenanceRegistryModelExists(bytes32 modelDigest, address submitter);

    /// @notice `submitter` made no claim about `modelDigest`.
    error ProvenanceRegistryModelNotRecorded(bytes32 modelDigest, address submitter);

    /// @notice The argument `field` is zero (or empty) but must be set.
    error ProvenanceRegistryMissingField(string field);

    /// @notice A model lists `count` datasets; at most `maximum` are accepted.
    error ProvenanceRegistryTooManyDatasets(uint256 count, uint256 maximum);

    /// @notice `witness` made the claim about `modelDigest`, so it cannot also witness it.
    error ProvenanceRegistryWitnessIsSubmitter(bytes32 modelDigest, address witness);

    /// @notice `witness` has already attested a reproduction of this claim.
    error ProvenanceRegistryAlreadyWitnessed(bytes32 modelDigest, address witness);

    /// @notice Writing the record's data contract failed.
    error ProvenanceRegistryStorageFailed(bytes32 modelDigest);

    /// @notice `publisher` registered an image claim.
    event ImageRegistered(
        bytes32 indexed imageDigest,
        address indexed publisher,
        bytes32 systemToplevel,
        bytes32 manifestBlobId,
        bytes32 manifestSha256
    );

    /// @notice `submitter` recorded a model claim; `getModel(modelDigest, submitter)` reads it.
    /// @dev The claim's other fields are left out of the event: gas per record is budgeted.
    event ModelRecorded(
        bytes32 indexed modelDigest, bytes32 indexed imageDigest, address indexed submitter
    );

    /// @notice `witness` re-trained the model of `submitter`'s claim and got the same bytes.
    event ReproductionAttested(
        bytes32 indexed modelDigest, address indexed submitter, address indexed witness
    );

    /// @notice Register the caller's claim about a worker image, once per account.
    /// @param imageDigest SHA-256 of the image file; must not be zero.
    /// @param systemToplevel SHA-256 of the UTF-8 system toplevel store path; must not be zero.
    /// @param manifestBlobId Raw bytes of the image manifest's Walrus blob ID; must not be zero.
    /// @param manifestSha256 SHA-256 of the image manifest's bytes; must not be zero.
    function registerImage(
        bytes32 imageDigest,
        bytes32 systemToplevel,
        bytes32 manifestBlobId,
        bytes32 manifestSha256
    ) external;

    /// @notice Record the caller's provenance claim about a trained model, once per account.
    /// @param modelDigest SHA-256 of the model file; must not be zero.
    /// @param imageDigest An image some account registered, or zero for an unregistered host.
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

    /// @notice Witness that the caller re-trained the model of `submitter`'s claim bit for bit.
    /// @dev One witness per account per claim; the submitter cannot witness its own claim.
    /// @param modelDigest A recorded model.
    /// @param submitter The account whose claim was reproduced.
    function attestReproduction(bytes32 modelDigest, address submitter) external;

    /// @notice `publisher`'s claim about `imageDigest`; reverts if there is none.
    /// @param imageDigest SHA-256 of the image file.
    /// @param publisher The account asked about.
    /// @return image The claim.
    function getImage(bytes32 imageDigest, address publisher)
        external
        view
        returns (Image memory image);

    /// @notice Whether `publisher` registered `imageDigest`.
    /// @param imageDigest SHA-256 of the image file.
    /// @param publisher The account asked about.
    /// @return registered True once the claim exists.
    function isRegistered(bytes32 imageDigest, address publisher)
        external
        view
        returns (bool registered);

    /// @notice `submitter`'s claim about `modelDigest`; reverts if there is none.
    /// @param modelDigest SHA-256 of the model file.
    /// @param submitter The account asked about.
    /// @return model Every field of the claim.
    function getModel(bytes32 modelDigest, address submitter)
        external
        view
        returns (Model memory model);

    /// @notice Whether `submitter` recorded `modelDigest`.
    /// @param modelDigest SHA-256 of the model file.
    /// @param submitter The account asked about.
    /// @return recorded True once the claim exists.
    function isRecorded(bytes32 modelDigest, address submitter)
        external
        view
        returns (bool recorded);

    /// @notice Whether `witness` attested a reproduction of `submitter`'s claim on `modelDigest`.
    /// @param modelDigest SHA-256 of the model file.
    /// @param submitter The account whose claim is meant.
    /// @param witness The account asked about.
    /// @return witnessed True if `witness` attested a reproduction.
    function hasWitnessed(bytes32 modelDigest, address submitter, address witness)
        external
        view
        returns (bool witnessed);

    /// @notice A page of the accounts that registered `imageDigest`, oldest first.
    /// @param imageDigest SHA-256 of the image file.
    /// @param start Index of the first account to return.
    /// @param limit How many to return at most (capped at `MAX_PAGE`).
    /// @return publishers The page.
    /// @return total How many accounts registered `imageDigest`.
    function imagePublishers(bytes32 imageDigest, uint256 start, uint256 limit)
        external
        view
        returns (address[] memory publishers, uint256 total);

    /// @notice A page of the accounts that recorded `modelDigest`, newest first.
    /// @dev Reverts if `before` is not zero and made no claim.
    /// @param modelDigest SHA-256 of the model file.
    /// @param before Zero for the newest claims, else the last account of the previous page.
    /// @param limit How many to return at most (capped at `MAX_PAGE`).
    /// @return submitters The page.
    /// @return total How many accounts recorded `modelDigest`.
    function modelSubmitters(bytes32 modelDigest, address before, uint256 limit)
        external
        view
        returns (address[] memory submitters, uint256 total);

    /// @notice A page of the witnesses of `submitter`'s claim on `modelDigest`, oldest first.
    /// @param modelDigest SHA-256 of the model file.
    /// @param submitter The account whose claim is meant.
    /// @param start Index of the first witness to return.
    /// @param limit How many to return at most (capped at `MAX_PAGE`).
    /// @return witnesses The page.
    /// @return total How many accounts witnessed the claim.
    function witnesses(bytes32 modelDigest, address submitter, uint256 start, uint256 limit)
        external
        view
        returns (address[] memory witnesses, uint256 total);

    /// @notice What a verifier needs about one model claim, in one bounded call.
    /// @dev Reverts if `submitter` made no claim. Each entry of `images` is `publishers[i]`'s
    /// claim about `model.imageDigest`, all zero where there is none (and for an unregistered
    /// host); `witnessed[i]` says whether `witnessesToCheck[i]` witnessed this claim.
    /// The caller chooses both lists, so the cost never depends on what others wrote.
    /// @param modelDigest SHA-256 of the model file.
    /// @param submitter The account whose claim is read.
    /// @param publishers The image publishers to look up.
    /// @param witnessesToCheck The witnesses to look up.
    /// @return model The claim.
    /// @return images One entry per publisher.
    /// @return witnessed One entry per witness asked about.
    /// @return witnessCount How many accounts witnessed the claim in all.
    function getProvenance(
        bytes32 modelDigest,
        address submitter,
        address[] calldata publishers,
        address[] calldata witnessesToCheck
    )
        external
        view
        returns (
            Model memory model,
            Image[] memory images,
            bool[] memory witnessed,
            uint256 witnessCount
        );
}

/// @title The okai provenance registry
/// @notice Write-once claims about worker images and trained models, one per account and
/// digest, plus reproduction witnesses per claim.
/// @dev A model claim is immutable data, so it is stored as the code of a small data contract
/// (the SSTORE2 pattern) and only that contract's address goes into storage: deploying code
/// costs 200 gas a byte against 22,100 gas for each fresh 32-byte storage slot. The data
/// contract's code is 0x00 (STOP, so calling it does nothing), the record format byte (2),
/// then the packed claim: imageDigest, jobDigest, attestationDigest, attestationBlobId
/// (32 bytes each), the previous submitter of the same model (20 bytes, zero for the first),
/// recordedAt (8 bytes), then the dataset digests. The claims on one model form a list,
/// newest first, from `_claims[modelDigest].latest` through each claim's previous submitter:
/// one storage slot per model instead of an array's two.
contract ProvenanceRegistry is IProvenanceRegistry {
    /// @notice The version of the record format: claims keyed by account.
    uint256 public constant RECORD_FORMAT = 2;

    /// @notice The most dataset digests one model claim may list.
    uint256 public constant MAX_DATASETS = 64;

    /// @notice The most entries one paged read returns.
    uint256 public constant MAX_PAGE = 100;

    /// @dev Byte offsets in a data contract's code: STOP and format (2), four bytes32 (128),
    /// previous submitter (20), recordedAt (8), then the datasets. Literals, as inline assembly
    /// reads them.
    uint256 private constant _HEADER_OFFSET = 2;
    uint256 private constant _PREVIOUS_OFFSET = 130;
    uint256 private constant _DATASETS_OFFSET = 158;

    /// @dev The newest claim on a model and how many there are, in one slot.
    struct Claims {
        address latest;
        uint96 count;
    }

    mapping(bytes32 imageDigest => mapping(address publisher => Image)) private _images;
    mapping(bytes32 imageDigest => address[]) private _publishers;
    mapping(bytes32 modelDigest => mapping(address submitter => address data)) private _models;
    mapping(bytes32 modelDigest => Claims) private _claims;
    mapping(bytes32 modelDigest => mapping(address submitter => address[])) private _witnesses;
    mapping(bytes32 modelDigest => mapping(address submitter => mapping(address => bool)))
        private _witnessed;

    /// @inheritdoc IProvenanceRegistry
    function registerImage(
        bytes32 imageDigest,
        bytes32 systemToplevel,
        bytes32 manifestBlobId,
        bytes32 manifestSha256
    ) external {
        if (imageDigest == 0) revert ProvenanceRegistryMissingField("imageDigest");
        if (systemToplevel == 0) revert ProvenanceRegistryMissingField("systemToplevel");
        if (manifestBlobId == 0) revert ProvenanceRegistryMissingField("manifestBlobId");
        if (manifestSha256 == 0) revert ProvenanceRegistryMissingField("manifestSha256");
        if (_images[imageDigest][msg.sender].publisher != address(0)) {
            revert ProvenanceRegistryImageExists(imageDigest, msg.sender);
        }
        _images[imageDigest][msg.sender] = Image({
            systemToplevel: systemToplevel,
            manifestBlobId: manifestBlobId,
            manifestSha256: manifestSha256,
            publisher: msg.sender,
            registeredAt: uint64(block.timestamp)
        });
        _publishers[imageDigest].push(msg.sender);
        emit ImageRegistered(imageDigest, msg.sender, systemToplevel, manifestBlobId, manifestSha256);
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
        if (_models[modelDigest][msg.sender] != address(0)) {
            revert ProvenanceRegistryModelExists(modelDigest, msg.sender);
        }
        if (imageDigest != 0 && _publishers[imageDigest].length == 0) {
            revert ProvenanceRegistryImageNotRegistered(imageDigest, address(0));
        }
        _checkDatasets(datasetManifestDigests);
        if (jobDigest == 0) revert ProvenanceRegistryMissingField("jobDigest");
        if (attestationDigest == 0) revert ProvenanceRegistryMissingField("attestationDigest");
        if (attestationBlobId == 0) revert ProvenanceRegistryMissingField("attestationBlobId");

        Claims memory claims = _claims[modelDigest];
        bytes memory record = abi.encodePacked(
            uint8(RECORD_FORMAT),
            imageDigest,
            jobDigest,
            attestationDigest,
            attestationBlobId,
            claims.latest,
            uint64(block.timestamp),
            datasetManifestDigests
        );
        address data = _writeData(record);
        if (data == address(0)) revert ProvenanceRegistryStorageFailed(modelDigest);
        _models[modelDigest][msg.sender] = data;
        _claims[modelDigest] = Claims({latest: msg.sender, count: claims.count + 1});
        emit ModelRecorded(modelDigest, imageDigest, msg.sender);
    }

    /// @inheritdoc IProvenanceRegistry
    function attestReproduction(bytes32 modelDigest, address submitter) external {
        if (_models[modelDigest][submitter] == address(0)) {
            revert ProvenanceRegistryModelNotRecorded(modelDigest, submitter);
        }
        if (submitter == msg.sender) {
            revert ProvenanceRegistryWitnessIsSubmitter(modelDigest, msg.sender);
        }
        if (_witnessed[modelDigest][submitter][msg.sender]) {
            revert ProvenanceRegistryAlreadyWitnessed(modelDigest, msg.sender);
        }
        _witnessed[modelDigest][submitter][msg.sender] = true;
        _witnesses[modelDigest][submitter].push(msg.sender);
        emit ReproductionAttested(modelDigest, submitter, msg.sender);
    }

    /// @inheritdoc IProvenanceRegistry
    function getImage(bytes32 imageDigest, address publisher)
        external
        view
        returns (Image memory image)
    {
        image = _images[imageDigest][publisher];
        if (image.publisher == address(0)) {
            revert ProvenanceRegistryImageNotRegistered(imageDigest, publisher);
        }
    }

    /// @inheritdoc IProvenanceRegistry
    function isRegistered(bytes32 imageDigest, address publisher)
        external
        view
        returns (bool registered)
    {
        registered = _images[imageDigest][publisher].publisher != address(0);
    }

    /// @inheritdoc IProvenanceRegistry
    function getModel(bytes32 modelDigest, address submitter)
        external
        view
        returns (Model memory model)
    {
        model = _readModel(modelDigest, submitter);
    }

    /// @inheritdoc IProvenanceRegistry
    function isRecorded(bytes32 modelDigest, address submitter)
        external
        view
        returns (bool recorded)
    {
        recorded = _models[modelDigest][submitter] != address(0);
    }

    /// @inheritdoc IProvenanceRegistry
    function hasWitnessed(bytes32 modelDigest, address submitter, address witness)
        external
        view
        returns (bool witnessed)
    {
        witnessed = _witnessed[modelDigest][submitter][witness];
    }

    /// @inheritdoc IProvenanceRegistry
    function imagePublishers(bytes32 imageDigest, uint256 start, uint256 limit)
        external
        view
        returns (address[] memory publishers, uint256 total)
    {
        (publishers, total) = _page(_publishers[imageDigest], start, limit);
    }

    /// @inheritdoc IProvenanceRegistry
    function modelSubmitters(bytes32 modelDigest, address before, uint256 limit)
        external
        view
        returns (address[] memory submitters, uint256 total)
    {
        Claims memory claims = _claims[modelDigest];
        total = claims.count;
        address cursor = claims.latest;
        if (before != address(0)) {
            address data = _models[modelDigest][before];
            if (data == address(0)) revert ProvenanceRegistryModelNotRecorded(modelDigest, before);
            cursor = _previous(data);
        }
        uint256 size = limit < MAX_PAGE ? limit : MAX_PAGE;
        if (size > total) size = total;
        submitters = new address[](size);
        uint256 found = 0;
        while (found < size && cursor != address(0)) {
            submitters[found++] = cursor;
            cursor = _previous(_models[modelDigest][cursor]);
        }
        assembly ("memory-safe") {
            mstore(submitters, found) // shorten to what the list held
        }
    }

    /// @inheritdoc IProvenanceRegistry
    function witnesses(bytes32 modelDigest, address submitter, uint256 start, uint256 limit)
        external
        view
        returns (address[] memory page, uint256 total)
    {
        (page, total) = _page(_witnesses[modelDigest][submitter], start, limit);
    }

    /// @inheritdoc IProvenanceRegistry
    function getProvenance(
        bytes32 modelDigest,
        address submitter,
        address[] calldata publishers,
        address[] calldata witnessesToCheck
    )
        external
        view
        returns (
            Model memory model,
            Image[] memory images,
            bool[] memory witnessed,
            uint256 witnessCount
        )
    {
        model = _readModel(modelDigest, submitter);
        images = new Image[](publishers.length);
        if (model.imageDigest != 0) {
            for (uint256 i = 0; i < publishers.length; ++i) {
                images[i] = _images[model.imageDigest][publishers[i]];
            }
        }
        witnessed = new bool[](witnessesToCheck.length);
        for (uint256 i = 0; i < witnessesToCheck.length; ++i) {
            witnessed[i] = _witnessed[modelDigest][submitter][witnessesToCheck[i]];
        }
        witnessCount = _witnesses[modelDigest][submitter].length;
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

    /// @dev Entries `start` to `start + min(limit, MAX_PAGE)` of `list` (fewer at its end).
    function _page(address[] storage list, uint256 start, uint256 limit)
        private
        view
        returns (address[] memory page, uint256 total)
    {
        total = list.length;
        uint256 end = start >= total ? start : start + (limit < MAX_PAGE ? limit : MAX_PAGE);
        if (end > total) end = total;
        page = new address[](end > start ? end - start : 0);
        for (uint256 i = 0; i < page.length; ++i) {
            page[i] = list[start + i];
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

    /// @dev The submitter of the claim recorded before the one in `data` (zero: none).
    function _previous(address data) private view returns (address previous) {
        assembly ("memory-safe") {
            let scratch := mload(0x40)
            extcodecopy(data, scratch, _PREVIOUS_OFFSET, 20)
            previous := shr(96, mload(scratch))
        }
    }

    /// @dev Decode a model claim from its data contract; reverts if there is none.
    function _readModel(bytes32 modelDigest, address submitter)
        private
        view
        returns (Model memory model)
    {
        address data = _models[modelDigest][submitter];
        if (data == address(0)) revert ProvenanceRegistryModelNotRecorded(modelDigest, submitter);
        uint256 count = (data.code.length - _DATASETS_OFFSET) / 32;
        bytes32[] memory datasets = new bytes32[](count);
        bytes32 imageDigest;
        bytes32 jobDigest;
        bytes32 attestationDigest;
        bytes32 attestationBlobId;
        uint64 recordedAt;
        assembly ("memory-safe") {
            let header := mload(0x40)
            extcodecopy(data, header, _HEADER_OFFSET, 156)
            imageDigest := mload(header)
            jobDigest := mload(add(header, 0x20))
            attestationDigest := mload(add(header, 0x40))
            attestationBlobId := mload(add(header, 0x60))
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
}
