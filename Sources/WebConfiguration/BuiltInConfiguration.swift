// The shipped conf.d files, used when a file is missing from --config-dir. Generated from
// conf.d by scripts/embed-config; a test keeps the two identical.
enum BuiltInConfiguration {
    static let machineConfig = #"""
<?xml version="1.0" encoding="utf-8"?>
<!--
  machine.config: declares the ASP.NET sections SessionHost reads and holds machine-wide values.
  The declarations are data: allowDefinition, allowLocation and overrideModeDefault decide where
  each section may be set. Without this file SessionHost uses a built-in copy of it.
-->
<configuration>
  <configSections>
    <section name="connectionStrings" type="System.Configuration.ConnectionStringsSection, System.Configuration" requirePermission="false" />
    <sectionGroup name="system.web" type="System.Web.Configuration.SystemWebSectionGroup, System.Web">
      <section name="httpCookies" type="System.Web.Configuration.HttpCookiesSection, System.Web" />
      <section name="httpRuntime" type="System.Web.Configuration.HttpRuntimeSection, System.Web" />
      <section name="pages" type="System.Web.Configuration.PagesSection, System.Web" />
      <section name="sessionState" type="System.Web.Configuration.SessionStateSection, System.Web" allowDefinition="MachineToApplication" />
    </sectionGroup>
  </configSections>
  <connectionStrings />
  <system.web>
    <!-- Machine-wide values, e.g. <sessionState mode="InProc" timeout="20" />. -->
  </system.web>
</configuration>

"""#

    static let rootWebConfig = #"""
<?xml version="1.0" encoding="utf-8"?>
<!--
  The root web.config: ASP.NET settings for every site on this machine, read after
  machine.config. <location path="Site Name/app"> targets one application of a site.
  Without this file SessionHost uses a built-in copy of it.
-->
<configuration>
  <system.web>
  </system.web>
</configuration>

"""#

    static let applicationHostConfig = #"""
<?xml version="1.0" encoding="utf-8"?>
<!--
  applicationHost.config: the server, as in IIS. It declares the system.webServer sections, lists
  the sites with their applications and virtual directories, and may set system.webServer
  values per site, application or folder with <location path="Site Name/app/dir">. As in IIS,
  system.web is not read from this file. A relative physicalPath is resolved against this
  file's folder. Without this file SessionHost uses a built-in copy of it.

  The site below is the example site of the repository (examples/site); point it at your own.
-->
<configuration>
  <configSections>
    <sectionGroup name="system.webServer">
      <!-- Locked: a web.config may not set <asp> unless a <location overrideMode="Allow"> here unlocks it. -->
      <section name="asp" overrideModeDefault="Deny" />
    </sectionGroup>
  </configSections>

  <system.applicationHost>
    <sites>
      <site name="Default Web Site" id="1">
        <application path="/">
          <virtualDirectory path="/" physicalPath="../examples/site/wwwroot" />
        </application>
        <application path="/shop">
          <virtualDirectory path="/" physicalPath="../examples/site/shop" />
        </application>
        <application path="/admin">
          <virtualDirectory path="/" physicalPath="../examples/site/admin" />
        </application>
        <application path="/m">
          <virtualDirectory path="/" physicalPath="../examples/site/mobile" />
        </application>
      </site>
    </sites>
  </system.applicationHost>

  <system.webServer>
    <asp>
      <session allowSessionState="true" keepSessionIdSecure="true" timeout="00:20:00" />
    </asp>
  </system.webServer>

  <!-- Delegate the classic ASP session settings of one folder to its web.config files. -->
  <location path="Default Web Site/classic" overrideMode="Allow">
    <system.webServer>
      <asp />
    </system.webServer>
  </location>
</configuration>

"""#
}
