//! EC2 (`ec2`, API version 2016-11-15), its networking part, over the ec2 protocol: VPCs,
//! subnets, security groups and their rules, network interfaces, availability zones, account
//! attributes and tags. Every operation of the model is listed in [`Ec2Operation`]; the others
//! answer `UnsupportedOperation`.
//!
//! Beside the API:
//! - [`defaults`]: the default VPC of a region, its default security group and one default
//!   subnet per availability zone (the zones agents report, created as they appear);
//! - [`ipam`]: subnet address management for awsvpc tasks — the network interfaces and their
//!   addresses are planned as store writes that ECS commits in the same transaction as its task
//!   records, and released in the one that stops the task, so no address is ever used twice and
//!   none outlives its task;
//! - [`policy`]: the security-group policy each agent enforces (`GET /ec2/v1/network-policy`, a
//!   stream of snapshots), compiled from the groups and the interfaces in its VPCs.
//!
//! A service crate: depends on the front, the wire layer, the domain and the store; never on
//! another service crate (ECS reaches it through a trait the composition root implements).

pub mod cidr;
pub mod defaults;
mod error;
pub mod ipam;
pub mod keys;
pub mod model;
pub mod policy;
mod security_groups;
mod subnets;
mod tags;
mod vpcs;
mod wire;
mod zones;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_aws_proto::ec2::Ec2Params;
use gantry_aws_proto::query::QueryRequest;
use gantry_front::{Protocol, QueryService, RequestContext, ServiceSpec};
use gantry_store::{Store, StoreExt, Txn, TxnOutcome, Versioned};

pub use defaults::{DefaultNetwork, ZoneSource};
pub use error::Ec2Error;

use crate::model::{SecurityGroup, Subnet, Vpc};
use crate::wire::Params;

gantry_front::operations! {
    /// Every operation of the EC2 API model.
    pub enum Ec2Operation {
        AcceptAddressTransfer,
        AcceptCapacityReservationBillingOwnership,
        AcceptReservedInstancesExchangeQuote,
        AcceptTransitGatewayClientVpnAttachment,
        AcceptTransitGatewayMulticastDomainAssociations,
        AcceptTransitGatewayPeeringAttachment,
        AcceptTransitGatewayVpcAttachment,
        AcceptVpcEndpointConnections,
        AcceptVpcPeeringConnection,
        AdvertiseByoipCidr,
        AllocateAddress,
        AllocateHosts,
        AllocateIpamPoolCidr,
        ApplySecurityGroupsToClientVpnTargetNetwork,
        AssignIpv6Addresses,
        AssignPrivateIpAddresses,
        AssignPrivateNatGatewayAddress,
        AssociateAddress,
        AssociateCapacityReservationBillingOwner,
        AssociateClientVpnTargetNetwork,
        AssociateDhcpOptions,
        AssociateEnclaveCertificateIamRole,
        AssociateIamInstanceProfile,
        AssociateInstanceEventWindow,
        AssociateIpamByoasn,
        AssociateIpamResourceDiscovery,
        AssociateNatGatewayAddress,
        AssociateRouteServer,
        AssociateRouteTable,
        AssociateSecurityGroupVpc,
        AssociateSubnetCidrBlock,
        AssociateTransitGatewayMulticastDomain,
        AssociateTransitGatewayPolicyTable,
        AssociateTransitGatewayRouteTable,
        AssociateTrunkInterface,
        AssociateVpcCidrBlock,
        AttachClassicLinkVpc,
        AttachInternetGateway,
        AttachNetworkInterface,
        AttachVerifiedAccessTrustProvider,
        AttachVolume,
        AttachVpnGateway,
        AuthorizeClientVpnIngress,
        AuthorizeSecurityGroupEgress,
        AuthorizeSecurityGroupIngress,
        BundleInstance,
        CancelBundleTask,
        CancelCapacityReservation,
        CancelCapacityReservationFleets,
        CancelConversionTask,
        CancelDeclarativePoliciesReport,
        CancelExportTask,
        CancelImageLaunchPermission,
        CancelImportTask,
        CancelReservedInstancesListing,
        CancelSpotFleetRequests,
        CancelSpotInstanceRequests,
        ConfirmProductInstance,
        CopyFpgaImage,
        CopyImage,
        CopySnapshot,
        CopyVolumes,
        CreateCapacityManagerDataExport,
        CreateCapacityReservation,
        CreateCapacityReservationBySplitting,
        CreateCapacityReservationFleet,
        CreateCarrierGateway,
        CreateClientVpnEndpoint,
        CreateClientVpnRoute,
        CreateCoipCidr,
        CreateCoipPool,
        CreateCustomerGateway,
        CreateDefaultSubnet,
        CreateDefaultVpc,
        CreateDelegateMacVolumeOwnershipTask,
        CreateDhcpOptions,
        CreateEgressOnlyInternetGateway,
        CreateFleet,
        CreateFlowLogs,
        CreateFpgaImage,
        CreateImage,
        CreateImageUsageReport,
        CreateInstanceConnectEndpoint,
        CreateInstanceEventWindow,
        CreateInstanceExportTask,
        CreateInternetGateway,
        CreateInterruptibleCapacityReservationAllocation,
        CreateIpam,
        CreateIpamExternalResourceVerificationToken,
        CreateIpamPolicy,
        CreateIpamPool,
        CreateIpamPrefixListResolver,
        CreateIpamPrefixListResolverTarget,
        CreateIpamResourceDiscovery,
        CreateIpamScope,
        CreateKeyPair,
        CreateLaunchTemplate,
        CreateLaunchTemplateVersion,
        CreateLocalGatewayRoute,
        CreateLocalGatewayRouteTable,
        CreateLocalGatewayRouteTableVirtualInterfaceGroupAssociation,
        CreateLocalGatewayRouteTableVpcAssociation,
        CreateLocalGatewayVirtualInterface,
        CreateLocalGatewayVirtualInterfaceGroup,
        CreateMacSystemIntegrityProtectionModificationTask,
        CreateManagedPrefixList,
        CreateNatGateway,
        CreateNetworkAcl,
        CreateNetworkAclEntry,
        CreateNetworkInsightsAccessScope,
        CreateNetworkInsightsPath,
        CreateNetworkInterface,
        CreateNetworkInterfacePermission,
        CreatePlacementGroup,
        CreatePublicIpv4Pool,
        CreateReplaceRootVolumeTask,
        CreateReservedInstancesListing,
        CreateRestoreImageTask,
        CreateRoute,
        CreateRouteServer,
        CreateRouteServerEndpoint,
        CreateRouteServerPeer,
        CreateRouteTable,
        CreateSecondaryNetwork,
        CreateSecondarySubnet,
        CreateSecurityGroup,
        CreateSnapshot,
        CreateSnapshots,
        CreateSpotDatafeedSubscription,
        CreateStoreImageTask,
        CreateSubnet,
        CreateSubnetCidrReservation,
        CreateTags,
        CreateTrafficMirrorFilter,
        CreateTrafficMirrorFilterRule,
        CreateTrafficMirrorSession,
        CreateTrafficMirrorTarget,
        CreateTransitGateway,
        CreateTransitGatewayConnect,
        CreateTransitGatewayConnectPeer,
        CreateTransitGatewayMeteringPolicy,
        CreateTransitGatewayMeteringPolicyEntry,
        CreateTransitGatewayMulticastDomain,
        CreateTransitGatewayPeeringAttachment,
        CreateTransitGatewayPolicyTable,
        CreateTransitGatewayPrefixListReference,
        CreateTransitGatewayRoute,
        CreateTransitGatewayRouteTable,
        CreateTransitGatewayRouteTableAnnouncement,
        CreateTransitGatewayVpcAttachment,
        CreateVerifiedAccessEndpoint,
        CreateVerifiedAccessGroup,
        CreateVerifiedAccessInstance,
        CreateVerifiedAccessTrustProvider,
        CreateVolume,
        CreateVpc,
        CreateVpcBlockPublicAccessExclusion,
        CreateVpcEncryptionControl,
        CreateVpcEndpoint,
        CreateVpcEndpointConnectionNotification,
        CreateVpcEndpointServiceConfiguration,
        CreateVpcPeeringConnection,
        CreateVpnConcentrator,
        CreateVpnConnection,
        CreateVpnConnectionRoute,
        CreateVpnGateway,
        DeleteCapacityManagerDataExport,
        DeleteCarrierGateway,
        DeleteClientVpnEndpoint,
        DeleteClientVpnRoute,
        DeleteCoipCidr,
        DeleteCoipPool,
        DeleteCustomerGateway,
        DeleteDhcpOptions,
        DeleteEgressOnlyInternetGateway,
        DeleteFleets,
        DeleteFlowLogs,
        DeleteFpgaImage,
        DeleteImageUsageReport,
        DeleteInstanceConnectEndpoint,
        DeleteInstanceEventWindow,
        DeleteInternetGateway,
        DeleteIpam,
        DeleteIpamExternalResourceVerificationToken,
        DeleteIpamPolicy,
        DeleteIpamPool,
        DeleteIpamPrefixListResolver,
        DeleteIpamPrefixListResolverTarget,
        DeleteIpamResourceDiscovery,
        DeleteIpamScope,
        DeleteKeyPair,
        DeleteLaunchTemplate,
        DeleteLaunchTemplateVersions,
        DeleteLocalGatewayRoute,
        DeleteLocalGatewayRouteTable,
        DeleteLocalGatewayRouteTableVirtualInterfaceGroupAssociation,
        DeleteLocalGatewayRouteTableVpcAssociation,
        DeleteLocalGatewayVirtualInterface,
        DeleteLocalGatewayVirtualInterfaceGroup,
        DeleteManagedPrefixList,
        DeleteNatGateway,
        DeleteNetworkAcl,
        DeleteNetworkAclEntry,
        DeleteNetworkInsightsAccessScope,
        DeleteNetworkInsightsAccessScopeAnalysis,
        DeleteNetworkInsightsAnalysis,
        DeleteNetworkInsightsPath,
        DeleteNetworkInterface,
        DeleteNetworkInterfacePermission,
        DeletePlacementGroup,
        DeletePublicIpv4Pool,
        DeleteQueuedReservedInstances,
        DeleteRoute,
        DeleteRouteServer,
        DeleteRouteServerEndpoint,
        DeleteRouteServerPeer,
        DeleteRouteTable,
        DeleteSecondaryNetwork,
        DeleteSecondarySubnet,
        DeleteSecurityGroup,
        DeleteSnapshot,
        DeleteSpotDatafeedSubscription,
        DeleteSubnet,
        DeleteSubnetCidrReservation,
        DeleteTags,
        DeleteTrafficMirrorFilter,
        DeleteTrafficMirrorFilterRule,
        DeleteTrafficMirrorSession,
        DeleteTrafficMirrorTarget,
        DeleteTransitGateway,
        DeleteTransitGatewayClientVpnAttachment,
        DeleteTransitGatewayConnect,
        DeleteTransitGatewayConnectPeer,
        DeleteTransitGatewayMeteringPolicy,
        DeleteTransitGatewayMeteringPolicyEntry,
        DeleteTransitGatewayMulticastDomain,
        DeleteTransitGatewayPeeringAttachment,
        DeleteTransitGatewayPolicyTable,
        DeleteTransitGatewayPrefixListReference,
        DeleteTransitGatewayRoute,
        DeleteTransitGatewayRouteTable,
        DeleteTransitGatewayRouteTableAnnouncement,
        DeleteTransitGatewayVpcAttachment,
        DeleteVerifiedAccessEndpoint,
        DeleteVerifiedAccessGroup,
        DeleteVerifiedAccessInstance,
        DeleteVerifiedAccessTrustProvider,
        DeleteVolume,
        DeleteVpc,
        DeleteVpcBlockPublicAccessExclusion,
        DeleteVpcEncryptionControl,
        DeleteVpcEndpointConnectionNotifications,
        DeleteVpcEndpointServiceConfigurations,
        DeleteVpcEndpoints,
        DeleteVpcPeeringConnection,
        DeleteVpnConcentrator,
        DeleteVpnConnection,
        DeleteVpnConnectionRoute,
        DeleteVpnGateway,
        DeprovisionByoipCidr,
        DeprovisionIpamByoasn,
        DeprovisionIpamPoolCidr,
        DeprovisionPublicIpv4PoolCidr,
        DeregisterImage,
        DeregisterInstanceEventNotificationAttributes,
        DeregisterTransitGatewayMulticastGroupMembers,
        DeregisterTransitGatewayMulticastGroupSources,
        DescribeAccountAttributes,
        DescribeAddressTransfers,
        DescribeAddresses,
        DescribeAddressesAttribute,
        DescribeAggregateIdFormat,
        DescribeAvailabilityZones,
        DescribeAwsNetworkPerformanceMetricSubscriptions,
        DescribeBundleTasks,
        DescribeByoipCidrs,
        DescribeCapacityBlockExtensionHistory,
        DescribeCapacityBlockExtensionOfferings,
        DescribeCapacityBlockOfferings,
        DescribeCapacityBlockStatus,
        DescribeCapacityBlocks,
        DescribeCapacityManagerDataExports,
        DescribeCapacityReservationBillingRequests,
        DescribeCapacityReservationFleets,
        DescribeCapacityReservationTopology,
        DescribeCapacityReservations,
        DescribeCarrierGateways,
        DescribeClassicLinkInstances,
        DescribeClientVpnAuthorizationRules,
        DescribeClientVpnConnections,
        DescribeClientVpnEndpoints,
        DescribeClientVpnRoutes,
        DescribeClientVpnTargetNetworks,
        DescribeCoipPools,
        DescribeConversionTasks,
        DescribeCustomerGateways,
        DescribeDeclarativePoliciesReports,
        DescribeDhcpOptions,
        DescribeEgressOnlyInternetGateways,
        DescribeElasticGpus,
        DescribeExportImageTasks,
        DescribeExportTasks,
        DescribeFastLaunchImages,
        DescribeFastSnapshotRestores,
        DescribeFleetHistory,
        DescribeFleetInstances,
        DescribeFleets,
        DescribeFlowLogs,
        DescribeFpgaImageAttribute,
        DescribeFpgaImages,
        DescribeHostReservationOfferings,
        DescribeHostReservations,
        DescribeHosts,
        DescribeIamInstanceProfileAssociations,
        DescribeIdFormat,
        DescribeIdentityIdFormat,
        DescribeImageAttribute,
        DescribeImageReferences,
        DescribeImageUsageReportEntries,
        DescribeImageUsageReports,
        DescribeImages,
        DescribeImportImageTasks,
        DescribeImportSnapshotTasks,
        DescribeInstanceAttribute,
        DescribeInstanceConnectEndpoints,
        DescribeInstanceCreditSpecifications,
        DescribeInstanceEventNotificationAttributes,
        DescribeInstanceEventWindows,
        DescribeInstanceImageMetadata,
        DescribeInstanceSqlHaHistoryStates,
        DescribeInstanceSqlHaStates,
        DescribeInstanceStatus,
        DescribeInstanceTopology,
        DescribeInstanceTypeOfferings,
        DescribeInstanceTypes,
        DescribeInstances,
        DescribeInternetGateways,
        DescribeIpamByoasn,
        DescribeIpamExternalResourceVerificationTokens,
        DescribeIpamPolicies,
        DescribeIpamPoolAllocations,
        DescribeIpamPools,
        DescribeIpamPrefixListResolverTargets,
        DescribeIpamPrefixListResolvers,
        DescribeIpamResourceDiscoveries,
        DescribeIpamResourceDiscoveryAssociations,
        DescribeIpamScopes,
        DescribeIpams,
        DescribeIpv6Pools,
        DescribeKeyPairs,
        DescribeLaunchTemplateVersions,
        DescribeLaunchTemplates,
        DescribeLocalGatewayRouteTableVirtualInterfaceGroupAssociations,
        DescribeLocalGatewayRouteTableVpcAssociations,
        DescribeLocalGatewayRouteTables,
        DescribeLocalGatewayVirtualInterfaceGroups,
        DescribeLocalGatewayVirtualInterfaces,
        DescribeLocalGateways,
        DescribeLockedSnapshots,
        DescribeMacHosts,
        DescribeMacModificationTasks,
        DescribeManagedPrefixLists,
        DescribeMovingAddresses,
        DescribeNatGateways,
        DescribeNetworkAcls,
        DescribeNetworkInsightsAccessScopeAnalyses,
        DescribeNetworkInsightsAccessScopes,
        DescribeNetworkInsightsAnalyses,
        DescribeNetworkInsightsPaths,
        DescribeNetworkInterfaceAttribute,
        DescribeNetworkInterfacePermissions,
        DescribeNetworkInterfaces,
        DescribeOutpostLags,
        DescribePlacementGroups,
        DescribePrefixLists,
        DescribePrincipalIdFormat,
        DescribePublicIpv4Pools,
        DescribeRegions,
        DescribeReplaceRootVolumeTasks,
        DescribeReservedInstances,
        DescribeReservedInstancesListings,
        DescribeReservedInstancesModifications,
        DescribeReservedInstancesOfferings,
        DescribeRouteServerEndpoints,
        DescribeRouteServerPeers,
        DescribeRouteServers,
        DescribeRouteTables,
        DescribeScheduledInstanceAvailability,
        DescribeScheduledInstances,
        DescribeSecondaryInterfaces,
        DescribeSecondaryNetworks,
        DescribeSecondarySubnets,
        DescribeSecurityGroupReferences,
        DescribeSecurityGroupRules,
        DescribeSecurityGroupVpcAssociations,
        DescribeSecurityGroups,
        DescribeServiceLinkVirtualInterfaces,
        DescribeSnapshotAttribute,
        DescribeSnapshotTierStatus,
        DescribeSnapshots,
        DescribeSpotDatafeedSubscription,
        DescribeSpotFleetInstances,
        DescribeSpotFleetRequestHistory,
        DescribeSpotFleetRequests,
        DescribeSpotInstanceRequests,
        DescribeSpotPriceHistory,
        DescribeStaleSecurityGroups,
        DescribeStoreImageTasks,
        DescribeSubnets,
        DescribeTags,
        DescribeTrafficMirrorFilterRules,
        DescribeTrafficMirrorFilters,
        DescribeTrafficMirrorSessions,
        DescribeTrafficMirrorTargets,
        DescribeTransitGatewayAttachments,
        DescribeTransitGatewayConnectPeers,
        DescribeTransitGatewayConnects,
        DescribeTransitGatewayMeteringPolicies,
        DescribeTransitGatewayMulticastDomains,
        DescribeTransitGatewayPeeringAttachments,
        DescribeTransitGatewayPolicyTables,
        DescribeTransitGatewayRouteTableAnnouncements,
        DescribeTransitGatewayRouteTables,
        DescribeTransitGatewayVpcAttachments,
        DescribeTransitGateways,
        DescribeTrunkInterfaceAssociations,
        DescribeVerifiedAccessEndpoints,
        DescribeVerifiedAccessGroups,
        DescribeVerifiedAccessInstanceLoggingConfigurations,
        DescribeVerifiedAccessInstances,
        DescribeVerifiedAccessTrustProviders,
        DescribeVolumeAttribute,
        DescribeVolumeStatus,
        DescribeVolumes,
        DescribeVolumesModifications,
        DescribeVpcAttribute,
        DescribeVpcBlockPublicAccessExclusions,
        DescribeVpcBlockPublicAccessOptions,
        DescribeVpcClassicLink,
        DescribeVpcClassicLinkDnsSupport,
        DescribeVpcEncryptionControls,
        DescribeVpcEndpointAssociations,
        DescribeVpcEndpointConnectionNotifications,
        DescribeVpcEndpointConnections,
        DescribeVpcEndpointServiceConfigurations,
        DescribeVpcEndpointServicePermissions,
        DescribeVpcEndpointServices,
        DescribeVpcEndpoints,
        DescribeVpcPeeringConnections,
        DescribeVpcs,
        DescribeVpnConcentrators,
        DescribeVpnConnections,
        DescribeVpnGateways,
        DetachClassicLinkVpc,
        DetachInternetGateway,
        DetachNetworkInterface,
        DetachVerifiedAccessTrustProvider,
        DetachVolume,
        DetachVpnGateway,
        DisableAddressTransfer,
        DisableAllowedImagesSettings,
        DisableAwsNetworkPerformanceMetricSubscription,
        DisableCapacityManager,
        DisableEbsEncryptionByDefault,
        DisableFastLaunch,
        DisableFastSnapshotRestores,
        DisableImage,
        DisableImageBlockPublicAccess,
        DisableImageDeprecation,
        DisableImageDeregistrationProtection,
        DisableInstanceSqlHaStandbyDetections,
        DisableIpamOrganizationAdminAccount,
        DisableIpamPolicy,
        DisableRouteServerPropagation,
        DisableSerialConsoleAccess,
        DisableSnapshotBlockPublicAccess,
        DisableTransitGatewayRouteTablePropagation,
        DisableVgwRoutePropagation,
        DisableVpcClassicLink,
        DisableVpcClassicLinkDnsSupport,
        DisassociateAddress,
        DisassociateCapacityReservationBillingOwner,
        DisassociateClientVpnTargetNetwork,
        DisassociateEnclaveCertificateIamRole,
        DisassociateIamInstanceProfile,
        DisassociateInstanceEventWindow,
        DisassociateIpamByoasn,
        DisassociateIpamResourceDiscovery,
        DisassociateNatGatewayAddress,
        DisassociateRouteServer,
        DisassociateRouteTable,
        DisassociateSecurityGroupVpc,
        DisassociateSubnetCidrBlock,
        DisassociateTransitGatewayMulticastDomain,
        DisassociateTransitGatewayPolicyTable,
        DisassociateTransitGatewayRouteTable,
        DisassociateTrunkInterface,
        DisassociateVpcCidrBlock,
        EnableAddressTransfer,
        EnableAllowedImagesSettings,
        EnableAwsNetworkPerformanceMetricSubscription,
        EnableCapacityManager,
        EnableEbsEncryptionByDefault,
        EnableFastLaunch,
        EnableFastSnapshotRestores,
        EnableImage,
        EnableImageBlockPublicAccess,
        EnableImageDeprecation,
        EnableImageDeregistrationProtection,
        EnableInstanceSqlHaStandbyDetections,
        EnableIpamOrganizationAdminAccount,
        EnableIpamPolicy,
        EnableReachabilityAnalyzerOrganizationSharing,
        EnableRouteServerPropagation,
        EnableSerialConsoleAccess,
        EnableSnapshotBlockPublicAccess,
        EnableTransitGatewayRouteTablePropagation,
        EnableVgwRoutePropagation,
        EnableVolumeIO,
        EnableVpcClassicLink,
        EnableVpcClassicLinkDnsSupport,
        ExportClientVpnClientCertificateRevocationList,
        ExportClientVpnClientConfiguration,
        ExportImage,
        ExportTransitGatewayRoutes,
        ExportVerifiedAccessInstanceClientConfiguration,
        GetActiveVpnTunnelStatus,
        GetAllowedImagesSettings,
        GetAssociatedEnclaveCertificateIamRoles,
        GetAssociatedIpv6PoolCidrs,
        GetAwsNetworkPerformanceData,
        GetCapacityManagerAttributes,
        GetCapacityManagerMetricData,
        GetCapacityManagerMetricDimensions,
        GetCapacityManagerMonitoredTagKeys,
        GetCapacityReservationUsage,
        GetCoipPoolUsage,
        GetConsoleOutput,
        GetConsoleScreenshot,
        GetDeclarativePoliciesReportSummary,
        GetDefaultCreditSpecification,
        GetEbsDefaultKmsKeyId,
        GetEbsEncryptionByDefault,
        GetEnabledIpamPolicy,
        GetFlowLogsIntegrationTemplate,
        GetGroupsForCapacityReservation,
        GetHostReservationPurchasePreview,
        GetImageAncestry,
        GetImageBlockPublicAccessState,
        GetInstanceMetadataDefaults,
        GetInstanceTpmEkPub,
        GetInstanceTypesFromInstanceRequirements,
        GetInstanceUefiData,
        GetIpamAddressHistory,
        GetIpamDiscoveredAccounts,
        GetIpamDiscoveredPublicAddresses,
        GetIpamDiscoveredResourceCidrs,
        GetIpamPolicyAllocationRules,
        GetIpamPolicyOrganizationTargets,
        GetIpamPoolAllocations,
        GetIpamPoolCidrs,
        GetIpamPrefixListResolverRules,
        GetIpamPrefixListResolverVersionEntries,
        GetIpamPrefixListResolverVersions,
        GetIpamResourceCidrs,
        GetLaunchTemplateData,
        GetManagedPrefixListAssociations,
        GetManagedPrefixListEntries,
        GetManagedResourceVisibility,
        GetNetworkInsightsAccessScopeAnalysisFindings,
        GetNetworkInsightsAccessScopeContent,
        GetPasswordData,
        GetReservedInstancesExchangeQuote,
        GetRouteServerAssociations,
        GetRouteServerPropagations,
        GetRouteServerRoutingDatabase,
        GetSecurityGroupsForVpc,
        GetSerialConsoleAccessStatus,
        GetSnapshotBlockPublicAccessState,
        GetSpotPlacementScores,
        GetSubnetCidrReservations,
        GetTransitGatewayAttachmentPropagations,
        GetTransitGatewayMeteringPolicyEntries,
        GetTransitGatewayMulticastDomainAssociations,
        GetTransitGatewayPolicyTableAssociations,
        GetTransitGatewayPolicyTableEntries,
        GetTransitGatewayPrefixListReferences,
        GetTransitGatewayRouteTableAssociations,
        GetTransitGatewayRouteTablePropagations,
        GetVerifiedAccessEndpointPolicy,
        GetVerifiedAccessEndpointTargets,
        GetVerifiedAccessGroupPolicy,
        GetVpcResourcesBlockingEncryptionEnforcement,
        GetVpnConnectionDeviceSampleConfiguration,
        GetVpnConnectionDeviceTypes,
        GetVpnTunnelReplacementStatus,
        ImportClientVpnClientCertificateRevocationList,
        ImportImage,
        ImportInstance,
        ImportKeyPair,
        ImportSnapshot,
        ImportVolume,
        ListImagesInRecycleBin,
        ListSnapshotsInRecycleBin,
        ListVolumesInRecycleBin,
        LockSnapshot,
        ModifyAddressAttribute,
        ModifyAvailabilityZoneGroup,
        ModifyCapacityReservation,
        ModifyCapacityReservationFleet,
        ModifyClientVpnEndpoint,
        ModifyDefaultCreditSpecification,
        ModifyEbsDefaultKmsKeyId,
        ModifyFleet,
        ModifyFpgaImageAttribute,
        ModifyHosts,
        ModifyIdFormat,
        ModifyIdentityIdFormat,
        ModifyImageAttribute,
        ModifyInstanceAttribute,
        ModifyInstanceCapacityReservationAttributes,
        ModifyInstanceConnectEndpoint,
        ModifyInstanceCpuOptions,
        ModifyInstanceCreditSpecification,
        ModifyInstanceEventStartTime,
        ModifyInstanceEventWindow,
        ModifyInstanceMaintenanceOptions,
        ModifyInstanceMetadataDefaults,
        ModifyInstanceMetadataOptions,
        ModifyInstanceNetworkPerformanceOptions,
        ModifyInstancePlacement,
        ModifyIpam,
        ModifyIpamPolicyAllocationRules,
        ModifyIpamPool,
        ModifyIpamPoolAllocation,
        ModifyIpamPrefixListResolver,
        ModifyIpamPrefixListResolverTarget,
        ModifyIpamResourceCidr,
        ModifyIpamResourceDiscovery,
        ModifyIpamScope,
        ModifyLaunchTemplate,
        ModifyLocalGatewayRoute,
        ModifyManagedPrefixList,
        ModifyManagedResourceVisibility,
        ModifyNetworkInterfaceAttribute,
        ModifyPrivateDnsNameOptions,
        ModifyPublicIpDnsNameOptions,
        ModifyReservedInstances,
        ModifyRouteServer,
        ModifySecurityGroupRules,
        ModifySnapshotAttribute,
        ModifySnapshotTier,
        ModifySpotFleetRequest,
        ModifySubnetAttribute,
        ModifyTrafficMirrorFilterNetworkServices,
        ModifyTrafficMirrorFilterRule,
        ModifyTrafficMirrorSession,
        ModifyTransitGateway,
        ModifyTransitGatewayMeteringPolicy,
        ModifyTransitGatewayPrefixListReference,
        ModifyTransitGatewayVpcAttachment,
        ModifyVerifiedAccessEndpoint,
        ModifyVerifiedAccessEndpointPolicy,
        ModifyVerifiedAccessGroup,
        ModifyVerifiedAccessGroupPolicy,
        ModifyVerifiedAccessInstance,
        ModifyVerifiedAccessInstanceLoggingConfiguration,
        ModifyVerifiedAccessTrustProvider,
        ModifyVolume,
        ModifyVolumeAttribute,
        ModifyVpcAttribute,
        ModifyVpcBlockPublicAccessExclusion,
        ModifyVpcBlockPublicAccessOptions,
        ModifyVpcEncryptionControl,
        ModifyVpcEndpoint,
        ModifyVpcEndpointConnectionNotification,
        ModifyVpcEndpointServiceConfiguration,
        ModifyVpcEndpointServicePayerResponsibility,
        ModifyVpcEndpointServicePermissions,
        ModifyVpcPeeringConnectionOptions,
        ModifyVpcTenancy,
        ModifyVpnConnection,
        ModifyVpnConnectionOptions,
        ModifyVpnTunnelCertificate,
        ModifyVpnTunnelOptions,
        MonitorInstances,
        MoveAddressToVpc,
        MoveByoipCidrToIpam,
        MoveCapacityReservationInstances,
        ProvisionByoipCidr,
        ProvisionIpamByoasn,
        ProvisionIpamPoolCidr,
        ProvisionPublicIpv4PoolCidr,
        PurchaseCapacityBlock,
        PurchaseCapacityBlockExtension,
        PurchaseHostReservation,
        PurchaseReservedInstancesOffering,
        PurchaseScheduledInstances,
        RebootInstances,
        RegisterImage,
        RegisterInstanceEventNotificationAttributes,
        RegisterTransitGatewayMulticastGroupMembers,
        RegisterTransitGatewayMulticastGroupSources,
        RejectCapacityReservationBillingOwnership,
        RejectTransitGatewayClientVpnAttachment,
        RejectTransitGatewayMulticastDomainAssociations,
        RejectTransitGatewayPeeringAttachment,
        RejectTransitGatewayVpcAttachment,
        RejectVpcEndpointConnections,
        RejectVpcPeeringConnection,
        ReleaseAddress,
        ReleaseHosts,
        ReleaseIpamPoolAllocation,
        ReplaceIamInstanceProfileAssociation,
        ReplaceImageCriteriaInAllowedImagesSettings,
        ReplaceNetworkAclAssociation,
        ReplaceNetworkAclEntry,
        ReplaceRoute,
        ReplaceRouteTableAssociation,
        ReplaceTransitGatewayRoute,
        ReplaceVpnTunnel,
        ReportInstanceStatus,
        RequestSpotFleet,
        RequestSpotInstances,
        ResetAddressAttribute,
        ResetEbsDefaultKmsKeyId,
        ResetFpgaImageAttribute,
        ResetImageAttribute,
        ResetInstanceAttribute,
        ResetNetworkInterfaceAttribute,
        ResetSnapshotAttribute,
        RestoreAddressToClassic,
        RestoreImageFromRecycleBin,
        RestoreManagedPrefixListVersion,
        RestoreSnapshotFromRecycleBin,
        RestoreSnapshotTier,
        RestoreVolumeFromRecycleBin,
        RevokeClientVpnIngress,
        RevokeSecurityGroupEgress,
        RevokeSecurityGroupIngress,
        RunInstances,
        RunScheduledInstances,
        SearchLocalGatewayRoutes,
        SearchTransitGatewayMulticastGroups,
        SearchTransitGatewayRoutes,
        SendDiagnosticInterrupt,
        StartDeclarativePoliciesReport,
        StartInstances,
        StartNetworkInsightsAccessScopeAnalysis,
        StartNetworkInsightsAnalysis,
        StartVpcEndpointServicePrivateDnsVerification,
        StopInstances,
        TerminateClientVpnConnections,
        TerminateInstances,
        UnassignIpv6Addresses,
        UnassignPrivateIpAddresses,
        UnassignPrivateNatGatewayAddress,
        UnlockSnapshot,
        UnmonitorInstances,
        UpdateCapacityManagerMonitoredTagKeys,
        UpdateCapacityManagerOrganizationsAccess,
        UpdateInterruptibleCapacityReservationAllocation,
        UpdateSecurityGroupRuleDescriptionsEgress,
        UpdateSecurityGroupRuleDescriptionsIngress,
        WithdrawByoipCidr,
    }
}

/// How the front reaches EC2.
pub static SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "ec2",
    signing_name: "ec2",
    protocol: Protocol::Ec2 {
        xmlns: Ec2Service::XMLNS,
        version: "2016-11-15",
    },
    operations: Ec2Operation::NAMES,
    // EC2's model constraints are not generated yet (scripts/gen-model-constraints.py).
    constraints: &gantry_aws_proto::constraints::Constraints::NONE,
};

/// The EC2 service.
pub struct Ec2Service {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) defaults: defaults::Defaulter,
}

impl fmt::Debug for Ec2Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ec2Service")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Ec2Service {
    pub const XMLNS: &'static str = "http://ec2.amazonaws.com/doc/2016-11-15/";

    /// EC2 over `store`; the default VPC of each region follows `network`, with a default subnet
    /// in each of its zones and each zone `zones` reports.
    pub fn new(
        store: Arc<dyn Store>,
        network: DefaultNetwork,
        zones: Option<Arc<dyn ZoneSource>>,
    ) -> Self {
        Self {
            defaults: defaults::Defaulter::new(store.clone(), network, zones),
            store,
        }
    }

    /// Creates what is missing of `region`'s default network (the default VPC, its default
    /// group, a default subnet per zone).
    pub async fn ensure_defaults(&self, region: &str) -> Result<(), Ec2Error> {
        self.defaults.ensure(region).await
    }

    /// Whether Gantry serves `op` (the rest answer `UnsupportedOperation`).
    pub fn is_implemented(op: Ec2Operation) -> bool {
        use Ec2Operation::*;
        matches!(
            op,
            CreateVpc
                | DeleteVpc
                | DescribeVpcs
                | ModifyVpcAttribute
                | DescribeVpcAttribute
                | CreateSubnet
                | DeleteSubnet
                | DescribeSubnets
                | ModifySubnetAttribute
                | CreateSecurityGroup
                | DeleteSecurityGroup
                | DescribeSecurityGroups
                | DescribeSecurityGroupRules
                | AuthorizeSecurityGroupIngress
                | AuthorizeSecurityGroupEgress
                | RevokeSecurityGroupIngress
                | RevokeSecurityGroupEgress
                | DescribeNetworkInterfaces
                | DescribeAvailabilityZones
                | DescribeAccountAttributes
                | CreateTags
                | DeleteTags
                | DescribeTags
        )
    }

    async fn dispatch(
        &self,
        op: Ec2Operation,
        p: &Params,
        ctx: &RequestContext,
    ) -> Result<String, Ec2Error> {
        use Ec2Operation::*;
        if !Self::is_implemented(op) {
            return Err(Ec2Error::Unsupported(op.to_string()));
        }
        self.defaults.ensure(&ctx.region).await?;
        match op {
            CreateVpc => vpcs::create(self, p, ctx).await,
            DeleteVpc => vpcs::delete(self, p, ctx).await,
            DescribeVpcs => vpcs::describe(self, p, ctx).await,
            ModifyVpcAttribute => vpcs::modify_attribute(self, p, ctx).await,
            DescribeVpcAttribute => vpcs::describe_attribute(self, p, ctx).await,
            CreateSubnet => subnets::create(self, p, ctx).await,
            DeleteSubnet => subnets::delete(self, p, ctx).await,
            DescribeSubnets => subnets::describe(self, p, ctx).await,
            ModifySubnetAttribute => subnets::modify_attribute(self, p, ctx).await,
            CreateSecurityGroup => security_groups::create(self, p, ctx).await,
            DeleteSecurityGroup => security_groups::delete(self, p, ctx).await,
            DescribeSecurityGroups => security_groups::describe(self, p, ctx).await,
            DescribeSecurityGroupRules => security_groups::describe_rules(self, p, ctx).await,
            AuthorizeSecurityGroupIngress => security_groups::authorize(self, p, ctx, false).await,
            AuthorizeSecurityGroupEgress => security_groups::authorize(self, p, ctx, true).await,
            RevokeSecurityGroupIngress => security_groups::revoke(self, p, ctx, false).await,
            RevokeSecurityGroupEgress => security_groups::revoke(self, p, ctx, true).await,
            DescribeNetworkInterfaces => ipam::describe(self, p, ctx).await,
            DescribeAvailabilityZones => zones::describe_zones(self, p, ctx).await,
            DescribeAccountAttributes => zones::describe_account_attributes(self, p, ctx).await,
            CreateTags => tags::create(self, p, ctx).await,
            DeleteTags => tags::delete(self, p, ctx).await,
            DescribeTags => tags::describe(self, p, ctx).await,
            other => Err(Ec2Error::Unsupported(other.to_string())),
        }
    }
}

#[async_trait]
impl QueryService for Ec2Service {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(
        &self,
        action: &str,
        req: &QueryRequest,
        ctx: &RequestContext,
    ) -> Result<String, AwsError> {
        let Ok(op) = action.parse::<Ec2Operation>() else {
            return Err(AwsError::client(
                "InvalidAction",
                format!("The action {action} is not valid for this web service."),
            ));
        };
        let p = Params {
            p: Ec2Params::from_request(req),
        };
        let run = async {
            if Self::is_implemented(op) && p.dry_run()? {
                return Err(Ec2Error::DryRun);
            }
            self.dispatch(op, &p, ctx).await
        };
        run.await.map_err(AwsError::from)
    }
}

const MAX_CAS_ATTEMPTS: usize = 64;

/// Builds and commits a transaction, rebuilding it from fresh reads after a conflict.
pub(crate) async fn commit_with_retry<F, Fut, R>(
    store: &dyn Store,
    mut build: F,
) -> Result<R, Ec2Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Txn, R), Ec2Error>>,
{
    let mut last_key = String::new();
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (txn, result) = build().await?;
        if txn.is_empty() {
            return Ok(result);
        }
        match store.commit(txn).await? {
            TxnOutcome::Committed { .. } => return Ok(result),
            TxnOutcome::Conflict { key } => last_key = key,
        }
    }
    Err(Ec2Error::Contention(last_key))
}

/// Checks that `id` has the shape of a `prefix` id, else EC2's `...Malformed` error.
pub(crate) fn check_id(prefix: &str, id: &str, code: &'static str) -> Result<(), Ec2Error> {
    if keys::is_id(prefix, id) {
        Ok(())
    } else {
        Err(Ec2Error::Malformed {
            code,
            id: id.to_owned(),
        })
    }
}

/// A VPC by id.
pub async fn vpc(store: &dyn Store, region: &str, id: &str) -> Result<Versioned<Vpc>, Ec2Error> {
    check_id("vpc", id, "InvalidVpcID.Malformed")?;
    store
        .get_typed::<Vpc>(&keys::vpc(region, id))
        .await?
        .ok_or_else(|| Ec2Error::VpcNotFound(id.to_owned()))
}

/// A subnet by id.
pub async fn subnet(
    store: &dyn Store,
    region: &str,
    id: &str,
) -> Result<Versioned<Subnet>, Ec2Error> {
    check_id("subnet", id, "InvalidSubnetID.Malformed")?;
    store
        .get_typed::<Subnet>(&keys::subnet(region, id))
        .await?
        .ok_or_else(|| Ec2Error::SubnetNotFound(id.to_owned()))
}

/// A security group by id.
pub async fn security_group(
    store: &dyn Store,
    region: &str,
    id: &str,
) -> Result<Versioned<SecurityGroup>, Ec2Error> {
    check_id("sg", id, "InvalidGroupId.Malformed")?;
    store
        .get_typed::<SecurityGroup>(&keys::security_group(region, id))
        .await?
        .ok_or_else(|| Ec2Error::GroupNotFound(id.to_owned()))
}

/// Every record of type `T` under `prefix`.
pub(crate) async fn scan_all<T: serde::de::DeserializeOwned + Send>(
    store: &dyn Store,
    prefix: &str,
) -> Result<Vec<Versioned<T>>, Ec2Error> {
    Ok(store.scan_all_typed::<T>(prefix).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_operation_is_listed_once() {
        assert_eq!(Ec2Operation::ALL.len(), 765);
        let implemented = Ec2Operation::ALL
            .iter()
            .filter(|o| Ec2Service::is_implemented(**o))
            .count();
        assert_eq!(implemented, 23);
        for op in Ec2Operation::ALL {
            assert_eq!(op.as_str().parse::<Ec2Operation>(), Ok(*op));
        }
    }
}
