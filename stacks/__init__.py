"""The CDK app of genro-mail-proxy serverless: one stack (mail_proxy_stack) of small constructs."""
